// jitgate console: countdowns and the live justification check. Progressive enhancement only:
// every page works without it, and the server checks everything again.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const countdowns = document.querySelectorAll("[data-expires]");
  const tick = () => {
    const now = Date.now() / 1000;
    countdowns.forEach((el) => {
      const left = Math.max(0, Math.round(Number(el.dataset.expires) - now));
      el.textContent = left > 0 ? `${Math.floor(left / 60)} min ${left % 60} s` : "ended";
    });
  };
  if (countdowns.length) { tick(); setInterval(tick, 1000); }

  const scope = document.getElementById("scope");
  const why = document.getElementById("justification");
  const hint = document.getElementById("justification-hint");
  const warning = document.getElementById("break-glass-warning");
  if (!scope || !why || !hint) return;
  const check = () => {
    const option = scope.selectedOptions[0];
    if (warning) warning.hidden = !(option && option.dataset.breakGlass === "true");
    const pattern = option && option.dataset.pattern;
    if (!pattern) { hint.textContent = ""; hint.classList.remove("bad"); return; }
    let ok = false;
    try { ok = new RegExp(`^(?:${pattern})$`, "u").test(why.value); } catch (e) { ok = true; }
    hint.textContent = ok ? "Justification matches the policy." : `The policy wants a justification matching ${pattern}`;
    hint.classList.toggle("bad", !ok);
  };
  scope.addEventListener("change", check);
  why.addEventListener("input", check);
  check();
});
