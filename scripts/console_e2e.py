#!/usr/bin/env python3
"""The web console in a real browser (Debian's headless Chromium driven by Selenium), with the
real sidecar and real Envoy (wasm filter): alice signs in at the development issuer's page and asks
for access (a bad, then a good justification), bob approves from his queue, alice gets a token and
a request through Envoy passes, an admin revokes it in the console and Envoy refuses the next
request within the poll interval; alice cannot approve her own request (no button, and a forged
POST is refused), and a POST without the CSRF token is refused. A sign-in belongs to the browser
that started it: its callback completed by another browser or client (login CSRF) signs nobody in;
a flood of started sign-ins from one address does not lock others out; junk user names do not stop
the provider's lockout from counting; over https the cookies are `__Host-` cookies. Then a second sidecar signs people
in at an external OpenID provider (panva/oidc-provider under Node, scripts/idp/): carol signs in
there, her `roles` claim becomes her groups, and her console token passes Envoy. Screenshots of
the main pages go to docs/console/. Run with the project virtualenv's Python (Selenium is installed there).
Prints `console: N passed, N failed`.
"""
import http.client
import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException, WebDriverException
from selenium.webdriver.support.ui import Select, WebDriverWait

from jitgate_env import ROOT, Sidecar, Stack, check, free_port, run_checks, run_dir, wait_port

SHOTS = ROOT / "docs" / "console"
USERS = {"alice": (["sre"], "alice-password-1"), "bob": (["sre-leads"], "bob-password-12"),
         "sam": (["secops"], "sam-password-123"), "erin": (["sre"], "erin-password-12")}


def browser(profile: str, *extra: str):
    o = Options()
    o.binary_location = "/usr/bin/chromium"
    # This machine has no outside network: Chromium's background fetches are switched off.
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--window-size=1280,1000", f"--user-data-dir={profile}", *extra):
        o.add_argument(a)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)


def plugin_config(sc):
    return {
        "issuer": "https://jitgate.local", "audience": "demo-api", "max_ttl_s": 900,
        "sidecar": {"cluster": "jitgate_sidecar", "timeout_ms": 1000, "jwks": {"refresh_s": 5},
                    "revocations": {"poll_ms": 1000, "fail_closed_after_s": 30}, "auth": sc.filter_auth()},
        "rules": [{"name": "orders", "path": {"prefix": "/orders"}, "scopes": ["orders:write"]},
                  {"name": "catalog", "path": {"prefix": "/catalog"}, "scopes": ["orders:read"]}],
    }


def sign_in(d, base, user):
    d.get(f"{base}/ui/")
    WebDriverWait(d, 10).until(lambda d: d.find_elements(By.ID, "password"))
    d.find_element(By.ID, "username").send_keys(user)
    d.find_element(By.ID, "password").send_keys(USERS[user][1])
    submit(d, d.find_element(By.ID, "sign-in"))
    WebDriverWait(d, 10).until(lambda d: d.find_elements(By.ID, "whoami"))
    return user in d.find_element(By.ID, "whoami").text


def submit(d, button):
    """Clicks a form's button and waits until the browser has left the page it was on."""
    button.click()

    def left(_):
        try:
            button.is_enabled()
            return False
        except StaleElementReferenceException:
            return True
        except WebDriverException as e:
            # Mid-navigation, Chromium reports a node of the old page this way instead.
            if "does not belong to the document" in str(e):
                return True
            raise

    WebDriverWait(d, 15).until(left)


def shot(d, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    d.save_screenshot(str(SHOTS / f"{name}.png"))


def post(port, path, fields, cookie=None):
    """A form POST outside the browser (a forger's request)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if cookie:
        headers["cookie"] = f"jitgate_console={cookie}"
    conn.request("POST", path, urllib.parse.urlencode(fields), headers)
    r = conn.getresponse()
    body = r.read().decode(errors="replace")
    conn.close()
    return r.status, body


def plain(port, method, path, fields=None, cookies=None, source="127.0.0.1"):
    """One plain HTTP request from `source` (any 127.0.0.0/8 address is this machine): the status,
    the Location, the cookies set by name (their whole Set-Cookie line) and the body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    headers, body = {}, None
    if fields is not None:
        body = urllib.parse.urlencode(fields)
        headers["content-type"] = "application/x-www-form-urlencoded"
    if cookies:
        headers["cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    try:
        conn.request(method, path, body, headers)
        r = conn.getresponse()
        text = r.read().decode(errors="replace")
        set_cookies = {c.split("=", 1)[0]: c for c in r.headers.get_all("set-cookie") or []}
        return r.status, r.getheader("location"), set_cookies, text
    finally:
        conn.close()


def path_of(url):
    u = urllib.parse.urlsplit(url)
    return f"{u.path}?{u.query}"


def session_set(set_cookies):
    return any(k.endswith("jitgate_console") and "Max-Age=0" not in v for k, v in set_cookies.items())


def stopped_before_callback(port, user):
    """A sign-in taken up to the provider's redirect and stopped there (what an attacker does):
    the callback URL, and the cookies `/ui/login` gave the client that started it."""
    _, authorize, set_cookies, _ = plain(port, "GET", "/ui/login")
    jar = {k: v.split(";")[0].split("=", 1)[1] for k, v in set_cookies.items()}
    fields = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(authorize).query))
    fields.update(username=user, password=USERS[user][1])
    _, callback, _, _ = plain(port, "POST", "/dev-idp/authorize", fields=fields)
    return callback, jar


def sign_in_belongs_to_its_browser(base, port, victim):
    """Login CSRF: bob signs in at the provider and stops before the redirect; whoever follows his
    callback URL without his sign-in's cookie is signed in as nobody."""
    callback, _ = stopped_before_callback(port, "bob")
    victim.get(callback)
    victim.get(f"{base}/ui/")
    at_sign_in = bool(victim.find_elements(By.ID, "password"))
    check("bob's callback URL opened in another browser: signed in as nobody (the sign-in page again)",
          at_sign_in and victim.get_cookie("jitgate_console") is None,
          "sign-in page" if at_sign_in else victim.find_element(By.TAG_NAME, "body").text[:80])
    callback, jar = stopped_before_callback(port, "bob")
    status, _, set_cookies, _ = plain(port, "GET", path_of(callback))
    check("... completed by a client without the sign-in's cookie: 4xx and no session",
          400 <= status < 500 and not session_set(set_cookies), f"{status}, cookies {sorted(set_cookies)}")
    status, _, set_cookies, _ = plain(port, "GET", path_of(callback), cookies=jar)
    check("... completed by the client that started it: signed in", status == 303 and session_set(set_cookies),
          f"{status}")


def flood_of_sign_ins(base, port, victim):
    """1,000 sign-ins started from one address (no credentials needed) crowd nobody else out."""
    statuses = {plain(port, "GET", "/ui/login", source="127.0.0.2")[0] for _ in range(1000)}
    check("1,000 sign-ins started from 127.0.0.2 are each sent to the provider", statuses == {303}, f"{statuses}")
    try:
        ok, seen = sign_in(victim, base, "alice"), ""
    except TimeoutException:
        ok, seen = False, victim.find_element(By.TAG_NAME, "body").text[:100]
    check("then alice, from 127.0.0.1, signs in in her browser", ok, seen)


def lockout_after_junk_names(port):
    """Failures for 1,000 made-up user names first, then six wrong passwords for erin: locked out."""
    if time.time() % 60 > 30:  # the lockout counts per minute: start with the minute's room ahead
        time.sleep(60 - time.time() % 60)
    _, authorize, _, _ = plain(port, "GET", "/ui/login")
    fields = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(authorize).query))
    junk = {plain(port, "POST", "/dev-idp/authorize", fields={**fields, "username": f"junk-{i}", "password": "x"})[0]
            for i in range(1000)}
    wrong = [plain(port, "POST", "/dev-idp/authorize", fields={**fields, "username": "erin", "password": "guess"})[0]
             for _ in range(6)]
    right = plain(port, "POST", "/dev-idp/authorize", fields={**fields, "username": "erin",
                                                               "password": USERS["erin"][1]})
    check("after 1,000 junk user names, six wrong passwords lock erin out, right password or not",
          junk == {401} and wrong == [401] * 5 + [429] and right[0] == 429 and "Too many attempts" in right[3],
          f"junk {junk}, wrong {wrong}, then the right one {right[0]}")


def over_https(work, profiles):
    """The console served over https: the sign-in and session cookies are `__Host-` cookies
    (Secure, Path=/, no Domain), so a sibling subdomain cannot plant one; a real browser signs in."""
    d = work / "https"
    d.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", "tls.key", "-out", "tls.pem"], cwd=d, check=True, capture_output=True)
    port = free_port()
    base = f"https://127.0.0.1:{port}"
    sc = Sidecar(d, port=port, dev_users=USERS,
                 extra=f"tls: {{cert_file: tls.pem, key_file: tls.key}}\nconsole: {{public_url: '{base}'}}\n").start()
    b = browser(f"{profiles}/https", "--ignore-certificate-errors")
    try:
        b.get(f"{base}/ui/")
        WebDriverWait(b, 10).until(lambda d: d.find_elements(By.ID, "password"))
        binding = b.get_cookie("__Host-jitgate_signin")
        b.find_element(By.ID, "username").send_keys("alice")
        b.find_element(By.ID, "password").send_keys(USERS["alice"][1])
        submit(b, b.find_element(By.ID, "sign-in"))
        WebDriverWait(b, 10).until(lambda d: d.find_elements(By.ID, "whoami") or d.find_elements(By.ID, "error"))
        who = b.find_elements(By.ID, "whoami")
        session = b.get_cookie("__Host-jitgate_console")
        check("over https: signed in with `__Host-` cookies (Secure, Path=/) for the sign-in and the session",
              who and "alice" in who[0].text and binding and binding.get("secure") and binding.get("path") == "/"
              and binding.get("httpOnly")
              and session and session.get("secure") and session.get("path") == "/" and session.get("httpOnly")
              and b.get_cookie("jitgate_console") is None,
              f"sign-in {binding and {k: binding[k] for k in ('path', 'secure')}}, "
              f"session {session and {k: session[k] for k in ('path', 'secure', 'httpOnly')}}")
    finally:
        b.quit()
        sc.stop()


def main():
    work = run_dir("console")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    port = free_port()
    sc = Sidecar(work, port=port, dev_users=USERS, extra=f"console: {{public_url: 'http://127.0.0.1:{port}'}}\n").start()
    base = f"http://127.0.0.1:{port}"
    profiles = tempfile.mkdtemp(prefix="jitgate-chromium-")
    browsers = []
    try:
        with Stack("console", plugin_config(sc), sidecar_port=sc.port, vm_env=sc.vm_env()) as s:
            alice, bob, sam = (browser(f"{profiles}/{u}") for u in ("alice", "bob", "sam"))
            browsers += [alice, bob, sam]
            run(s, base, port, alice, bob, sam)
            victim = browser(f"{profiles}/victim")
            browsers.append(victim)
            sign_in_belongs_to_its_browser(base, port, victim)
            flood_of_sign_ins(base, port, victim)
            lockout_after_junk_names(port)
            over_https(work, profiles)
            carol = browser(f"{profiles}/carol")
            browsers.append(carol)
            run_external_provider(s, work, sc, carol)
    finally:
        for b in browsers:
            b.quit()
        sc.stop()
        shutil.rmtree(profiles, ignore_errors=True)


def run(s, base, port, alice, bob, sam):
    alice.get(f"{base}/ui/")
    WebDriverWait(alice, 10).until(lambda d: d.find_elements(By.ID, "password"))
    shot(alice, "sign-in")
    wrong = alice.find_element(By.ID, "username")
    wrong.send_keys("alice")
    alice.find_element(By.ID, "password").send_keys("not-her-password")
    submit(alice, alice.find_element(By.ID, "sign-in"))
    check("a wrong password is refused at the sign-in page", "Wrong user name or password" in alice.page_source)
    check("alice signs in at the development issuer", sign_in(alice, base, "alice"))

    Select(alice.find_element(By.ID, "scope")).select_by_value("orders:write")
    alice.find_element(By.ID, "justification").send_keys("please")
    hint = alice.find_element(By.ID, "justification-hint")
    check("the justification is checked live against the policy", "bad" in hint.get_attribute("class"), hint.text)
    submit(alice, alice.find_element(By.ID, "ask"))
    error = alice.find_elements(By.ID, "form-error")
    check("a bad justification is refused with the policy's rule", error and "must match" in error[0].text,
          error[0].text if error else alice.page_source[:200])
    field = alice.find_element(By.ID, "justification")
    field.clear()
    field.send_keys("INC-4711 orders-db disk full")
    check("a good one passes the live check", "bad" not in alice.find_element(By.ID, "justification-hint").get_attribute("class"))
    submit(alice, alice.find_element(By.ID, "ask"))
    rows = alice.find_elements(By.CSS_SELECTOR, "#my-requests tbody tr")
    states = [r.find_element(By.CLASS_NAME, "state").text for r in rows]
    check("alice's request is listed as pending", states == ["pending"], f"{states}")
    request_id = rows[0].get_attribute("data-id")
    shot(alice, "requester")

    check("bob signs in", sign_in(bob, base, "bob"))
    bob.get(f"{base}/ui/queue")
    articles = bob.find_elements(By.CSS_SELECTOR, "article.request")
    check("bob sees it in his queue with who, what and why",
          [a.get_attribute("data-id") for a in articles] == [request_id] and "INC-4711" in articles[0].text)
    shot(bob, "queue")
    bob.get(f"{base}/ui/requests/{request_id}")
    check("the request's own page (where notices link) offers bob the decision",
          bob.find_elements(By.CSS_SELECTOR, f"article[data-id='{request_id}'] button.approve"))
    bob.get(f"{base}/ui/queue")
    articles = bob.find_elements(By.CSS_SELECTOR, "article.request")
    articles[0].find_element(By.NAME, "comment").send_keys("go ahead, watch the disk")
    submit(bob, articles[0].find_element(By.CSS_SELECTOR, "button.approve"))
    check("bob approves: his queue is empty", bob.find_elements(By.ID, "queue-empty"))

    alice.get(f"{base}/ui/")
    row = alice.find_element(By.CSS_SELECTOR, f"#my-requests tr[data-id='{request_id}']")
    check("alice's grant is active, with a countdown", row.find_element(By.CLASS_NAME, "state").text == "active"
          and row.find_elements(By.CLASS_NAME, "countdown"))
    submit(alice, row.find_element(By.CSS_SELECTOR, "button.get-token"))
    token = alice.find_element(By.ID, "token").get_attribute("value").strip()
    check("'Get a token' shows a token and a copy-ready curl line",
          token.count(".") == 2 and token in alice.find_element(By.ID, "curl").text)
    shot(alice, "token")
    r = s.request("GET", "/orders/1", {"authorization": f"Bearer {token}"})
    check("a request through real Envoy with it: 200", r.status == 200, f"{r.status}")

    # alice cannot approve her own request: no button, and a forged POST is refused.
    alice.get(f"{base}/ui/")
    Select(alice.find_element(By.ID, "scope")).select_by_value("orders:write")
    alice.find_element(By.ID, "justification").send_keys("CHG-7 second request")
    submit(alice, alice.find_element(By.ID, "ask"))
    own = alice.find_element(By.CSS_SELECTOR, "#my-requests tbody tr").get_attribute("data-id")
    alice.get(f"{base}/ui/queue")
    no_button = not alice.find_elements(By.CSS_SELECTOR, f"article[data-id='{own}'] button.approve")
    alice.get(f"{base}/ui/requests/{own}")
    check("alice sees her own request with no approve button, in the queue or on its page",
          no_button and alice.find_elements(By.CSS_SELECTOR, f"article[data-id='{own}']")
          and not alice.find_elements(By.CSS_SELECTOR, "button.approve"))
    cookie = alice.get_cookie("jitgate_console")
    csrf = alice.find_element(By.NAME, "csrf").get_attribute("value")
    status, body = post(port, f"/ui/requests/{own}/decide", {"decision": "approve", "csrf": csrf}, cookie["value"])
    check("a forged approval of her own request: 403", status == 403 and "own request" in body, f"{status}")
    status, body = post(port, f"/ui/requests/{own}/decide", {"decision": "deny"}, cookie["value"])
    check("a POST without the CSRF token: 403", status == 403 and "CSRF" in body, f"{status}")
    check("the session cookie is HttpOnly and SameSite=Lax",
          cookie.get("httpOnly") is True and cookie.get("sameSite") == "Lax", f"{cookie}")

    check("sam (secops) signs in", sign_in(sam, base, "sam"))
    sam.get(f"{base}/ui/admin")
    check("the admin page shows the SLIs and an intact chain",
          sam.find_elements(By.ID, "sli-issuance") and "Chain intact" in sam.find_element(By.ID, "chain").text)
    shot(sam, "admin")
    hour_ago = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() - 3600))
    rows = lambda: len(sam.find_elements(By.CSS_SELECTOR, "#timeline tbody tr"))  # noqa: E731
    sam.get(f"{base}/ui/admin?event=grant.approved&from={hour_ago}")
    recent = rows()
    sam.get(f"{base}/ui/admin?event=grant.approved&to={hour_ago}")
    older = rows()
    sam.get(f"{base}/ui/admin?from=yesterday")
    check("the audit timeline filters by time (UTC) and says when a time is malformed",
          recent >= 1 and older == 0 and sam.find_elements(By.ID, "time-error"), f"{recent} / {older}")
    sam.get(f"{base}/ui/admin")
    submit(sam, sam.find_element(By.CSS_SELECTOR, f"#active-grants tr[data-id='{request_id}'] button.revoke"))
    t0 = time.monotonic()
    status = 200
    while time.monotonic() - t0 < 5:
        status = s.request("GET", "/orders/1", {"authorization": f"Bearer {token}"}).status
        if status == 401:
            break
        time.sleep(0.05)
    check("the admin revokes in the console: Envoy refuses the token within the poll interval", status == 401,
          f"{status} after {time.monotonic() - t0:.2f} s")
    bob.get(f"{base}/ui/admin")
    check("bob is no admin: 403", "for admins" in bob.page_source)


def run_external_provider(s, work, sc, carol):
    """A second sidecar whose console signs people in at an external OpenID provider; it signs
    tokens with the first one's keys (shared keys_dir), so the same Envoy accepts them."""
    idp_port, port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    issuer = f"http://127.0.0.1:{idp_port}"
    secret = "console-client-secret-0123456789"
    idp_dir = work / "idp"
    idp_dir.mkdir()
    (idp_dir / "idp.json").write_text(json.dumps({
        "client_id": "jitgate-console", "client_secret": secret, "redirect_uri": f"{base}/ui/callback",
        "users": {"carol": {"password": "carol-password-1", "roles": ["sre"]}}}))
    with open(idp_dir / "idp.log", "ab") as log:
        idp = subprocess.Popen(["node", str(ROOT / "scripts" / "idp" / "provider.mjs"), str(idp_port),
                                str(idp_dir / "idp.json")], stdout=log, stderr=subprocess.STDOUT)
    with open(work / "pids", "a") as pids:
        pids.write(f"{idp.pid}\n")
    second = work / "oidc-sidecar"
    second.mkdir()
    (second / "client-secret").write_text(secret)
    sign_in = {"oidc": {"issuer": issuer, "client_id": "jitgate-console", "client_secret_file": "client-secret",
                        "scopes": ["roles"]}}
    extra = f"keys_dir: {sc.dir / 'data'}\nconsole: {json.dumps({'public_url': base, 'sign_in': sign_in})}\n"
    issuers = [{"issuer": issuer, "audience": "jitgate-console", "jwks_url": f"{issuer}/jwks", "groups_claim": "roles"}]
    oidc = Sidecar(second, port=port, extra=extra, issuers=issuers, secret_file=sc.secret_file)
    try:
        wait_port(idp_port, idp, "the test OpenID provider")
        oidc.start()
        carol.get(f"{base}/ui/")
        WebDriverWait(carol, 10).until(lambda d: d.find_elements(By.ID, "idp-password"))
        check("the console sends carol to the external provider's sign-in page",
              carol.current_url.startswith(issuer), carol.current_url.split("?")[0])
        carol.find_element(By.ID, "idp-username").send_keys("carol")
        carol.find_element(By.ID, "idp-password").send_keys("not-her-password")
        submit(carol, carol.find_element(By.ID, "idp-sign-in"))
        check("the provider refuses a wrong password", carol.find_elements(By.ID, "idp-error"))
        carol.find_element(By.ID, "idp-username").send_keys("carol")
        carol.find_element(By.ID, "idp-password").send_keys("carol-password-1")
        submit(carol, carol.find_element(By.ID, "idp-sign-in"))
        WebDriverWait(carol, 10).until(lambda d: d.find_elements(By.ID, "whoami") or d.find_elements(By.ID, "error"))
        who = carol.find_elements(By.ID, "whoami")
        check("carol is signed in to the console through the provider (code + PKCE + nonce)",
              who and "carol" in who[0].text, who[0].text if who else carol.find_element(By.TAG_NAME, "body").text[:300])
        check("her `roles` claim became her groups (sre may ask for orders:read)",
              carol.find_elements(By.CSS_SELECTOR, "#scope option[value='orders:read']"))
        Select(carol.find_element(By.ID, "scope")).select_by_value("orders:read")
        submit(carol, carol.find_element(By.ID, "ask"))
        row = carol.find_element(By.CSS_SELECTOR, "#my-requests tbody tr")
        submit(carol, row.find_element(By.CSS_SELECTOR, "button.get-token"))
        token = carol.find_element(By.ID, "token").get_attribute("value").strip()
        r = s.request("GET", "/catalog/1", {"authorization": f"Bearer {token}"})
        check("her console token (exchanged from the provider's ID token) passes Envoy: 200", r.status == 200,
              f"{r.status}")
        audit = [json.loads(line)["event"] for line in oidc.audit_file.read_text().splitlines()]
        signed = [e for e in audit if e.get("event") == "identity.signed_in"]
        check("the sign-in is audited under the provider's issuer",
              signed and signed[0]["iss"] == issuer and signed[0]["sub"] == "carol", f"{signed[:1]}")
    finally:
        oidc.stop()
        idp.terminate()
        idp.wait(timeout=10)


if __name__ == "__main__":
    run_checks("console", main)
