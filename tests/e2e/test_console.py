"""The web console in a real browser (Debian's headless Chromium driven by Selenium), with the
real sidecar and real Envoy (wasm filter): alice signs in at the development issuer's page and asks
for access (a bad, then a good justification), bob approves from his queue, alice gets a token and
a request through Envoy passes, an admin revokes it in the console and Envoy refuses the next
request within the poll interval; alice cannot approve her own request (no button, and a forged
POST is refused), and a POST without the CSRF token is refused. A sign-in belongs to the browser
that started it: its callback completed by another browser or client (login CSRF) signs nobody in;
a flood of started sign-ins from one address does not lock others out; junk user names do not stop
the provider's lockout from counting; over https the cookies are `__Host-` cookies. Then a second
sidecar signs people in at an external OpenID provider (panva/oidc-provider under Node,
scripts/idp/): carol signs in there, her `roles` claim becomes her groups, and her console token
passes Envoy. Screenshots of the main pages go to docs/console/. The tests are one story, in order.
"""
import http.client
import json
import subprocess
import time
import urllib.parse
from types import SimpleNamespace

import pytest
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from conftest import fresh_dir
from jitgate_env import ROOT, Sidecar, free_port, wait_port

SHOTS = ROOT / "docs" / "console"
USERS = {"alice": (["sre"], "alice-password-1"), "bob": (["sre-leads"], "bob-password-12"),
         "sam": (["secops"], "sam-password-123"), "erin": (["sre"], "erin-password-12")}


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


@pytest.fixture(scope="module")
def console(sidecar, envoy, browser):
    """The sidecar serving the console, Envoy in front of the API, and alice's, bob's and sam's browsers."""
    work = fresh_dir("console")
    port = free_port()
    sc = sidecar(work, port=port, dev_users=USERS, extra=f"console: {{public_url: 'http://127.0.0.1:{port}'}}\n")
    s = envoy("console", plugin_config(sc), sidecar_port=sc.port, vm_env=sc.vm_env())
    return SimpleNamespace(work=work, sc=sc, s=s, port=port, base=f"http://127.0.0.1:{port}",
                           alice=browser("alice"), bob=browser("bob"), sam=browser("sam"))


def test_a_wrong_password_is_refused_at_the_sign_in_page(console):
    alice, base = console.alice, console.base
    alice.get(f"{base}/ui/")
    WebDriverWait(alice, 10).until(lambda d: d.find_elements(By.ID, "password"))
    shot(alice, "sign-in")
    alice.find_element(By.ID, "username").send_keys("alice")
    alice.find_element(By.ID, "password").send_keys("not-her-password")
    submit(alice, alice.find_element(By.ID, "sign-in"))
    assert "Wrong user name or password" in alice.page_source


def test_alice_signs_in_at_the_development_issuer(console):
    assert sign_in(console.alice, console.base, "alice")


def test_the_justification_is_checked_live_against_the_policy(console):
    alice = console.alice
    Select(alice.find_element(By.ID, "scope")).select_by_value("orders:write")
    alice.find_element(By.ID, "justification").send_keys("please")
    hint = alice.find_element(By.ID, "justification-hint")
    assert "bad" in hint.get_attribute("class"), hint.text


def test_a_bad_justification_is_refused_with_the_policys_rule(console):
    alice = console.alice
    submit(alice, alice.find_element(By.ID, "ask"))
    error = alice.find_elements(By.ID, "form-error")
    assert error and "must match" in error[0].text, error[0].text if error else alice.page_source[:200]


def test_a_good_one_passes_the_live_check(console):
    alice = console.alice
    field = alice.find_element(By.ID, "justification")
    field.clear()
    field.send_keys("INC-4711 orders-db disk full")
    assert "bad" not in alice.find_element(By.ID, "justification-hint").get_attribute("class")


def test_alices_request_is_listed_as_pending(console):
    alice = console.alice
    submit(alice, alice.find_element(By.ID, "ask"))
    rows = alice.find_elements(By.CSS_SELECTOR, "#my-requests tbody tr")
    states = [r.find_element(By.CLASS_NAME, "state").text for r in rows]
    console.request_id = rows[0].get_attribute("data-id") if rows else None
    shot(alice, "requester")
    assert states == ["pending"], f"{states}"


def test_bob_signs_in(console):
    assert sign_in(console.bob, console.base, "bob")


def test_bob_sees_it_in_his_queue_with_who_what_and_why(console):
    bob = console.bob
    bob.get(f"{console.base}/ui/queue")
    articles = bob.find_elements(By.CSS_SELECTOR, "article.request")
    shot(bob, "queue")
    assert [a.get_attribute("data-id") for a in articles] == [console.request_id] and "INC-4711" in articles[0].text


def test_the_requests_own_page_where_notices_link_offers_bob_the_decision(console):
    bob = console.bob
    bob.get(f"{console.base}/ui/requests/{console.request_id}")
    assert bob.find_elements(By.CSS_SELECTOR, f"article[data-id='{console.request_id}'] button.approve")


def test_bob_approves_his_queue_is_empty(console):
    bob = console.bob
    bob.get(f"{console.base}/ui/queue")
    articles = bob.find_elements(By.CSS_SELECTOR, "article.request")
    articles[0].find_element(By.NAME, "comment").send_keys("go ahead, watch the disk")
    submit(bob, articles[0].find_element(By.CSS_SELECTOR, "button.approve"))
    assert bob.find_elements(By.ID, "queue-empty")


def test_alices_grant_is_active_with_a_countdown(console):
    alice = console.alice
    alice.get(f"{console.base}/ui/")
    row = alice.find_element(By.CSS_SELECTOR, f"#my-requests tr[data-id='{console.request_id}']")
    assert row.find_element(By.CLASS_NAME, "state").text == "active" and row.find_elements(By.CLASS_NAME, "countdown")


def test_get_a_token_shows_a_token_and_a_copy_ready_curl_line(console):
    alice = console.alice
    row = alice.find_element(By.CSS_SELECTOR, f"#my-requests tr[data-id='{console.request_id}']")
    submit(alice, row.find_element(By.CSS_SELECTOR, "button.get-token"))
    console.token = alice.find_element(By.ID, "token").get_attribute("value").strip()
    shot(alice, "token")
    assert console.token.count(".") == 2 and console.token in alice.find_element(By.ID, "curl").text


def test_a_request_through_real_envoy_with_it_200(console):
    r = console.s.request("GET", "/orders/1", {"authorization": f"Bearer {console.token}"})
    assert r.status == 200, f"{r.status}"


# alice cannot approve her own request: no button, and a forged POST is refused.

def test_alice_sees_her_own_request_with_no_approve_button_in_the_queue_or_on_its_page(console):
    alice, base = console.alice, console.base
    alice.get(f"{base}/ui/")
    Select(alice.find_element(By.ID, "scope")).select_by_value("orders:write")
    alice.find_element(By.ID, "justification").send_keys("CHG-7 second request")
    submit(alice, alice.find_element(By.ID, "ask"))
    console.own = own = alice.find_element(By.CSS_SELECTOR, "#my-requests tbody tr").get_attribute("data-id")
    alice.get(f"{base}/ui/queue")
    no_button = not alice.find_elements(By.CSS_SELECTOR, f"article[data-id='{own}'] button.approve")
    alice.get(f"{base}/ui/requests/{own}")
    console.cookie = alice.get_cookie("jitgate_console")
    console.csrf = alice.find_element(By.NAME, "csrf").get_attribute("value")
    assert no_button and alice.find_elements(By.CSS_SELECTOR, f"article[data-id='{own}']") \
        and not alice.find_elements(By.CSS_SELECTOR, "button.approve")


def test_a_forged_approval_of_her_own_request_403(console):
    status, body = post(console.port, f"/ui/requests/{console.own}/decide", {"decision": "approve", "csrf": console.csrf},
                        console.cookie["value"])
    assert status == 403 and "own request" in body, f"{status}"


def test_a_post_without_the_csrf_token_403(console):
    status, body = post(console.port, f"/ui/requests/{console.own}/decide", {"decision": "deny"},
                        console.cookie["value"])
    assert status == 403 and "CSRF" in body, f"{status}"


def test_the_session_cookie_is_httponly_and_samesite_lax(console):
    cookie = console.cookie
    assert cookie.get("httpOnly") is True and cookie.get("sameSite") == "Lax", f"{cookie}"


def test_sam_secops_signs_in(console):
    assert sign_in(console.sam, console.base, "sam")


def test_the_admin_page_shows_the_slis_and_an_intact_chain(console):
    sam = console.sam

    def verified(d):
        # The sidecar verifies the whole chain in the background after start; the page shows the result.
        d.get(f"{console.base}/ui/admin")
        return "Chain intact" in d.find_element(By.ID, "verification").text

    WebDriverWait(sam, 20, poll_frequency=0.5).until(verified)
    shot(sam, "admin")
    chain = sam.find_element(By.ID, "chain").text
    assert sam.find_elements(By.ID, "sli-issuance") and "segment(s)" in chain and "head" in chain, chain


def test_the_audit_timeline_filters_by_time_utc_and_says_when_a_time_is_malformed(console):
    sam, base = console.sam, console.base
    hour_ago = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() - 3600))
    rows = lambda: len(sam.find_elements(By.CSS_SELECTOR, "#timeline tbody tr"))  # noqa: E731
    sam.get(f"{base}/ui/admin?event=grant.approved&from={hour_ago}")
    recent = rows()
    sam.get(f"{base}/ui/admin?event=grant.approved&to={hour_ago}")
    older = rows()
    sam.get(f"{base}/ui/admin?from=yesterday")
    assert recent >= 1 and older == 0 and sam.find_elements(By.ID, "time-error"), f"{recent} / {older}"


def test_the_admin_revokes_in_the_console_envoy_refuses_the_token_within_the_poll_interval(console):
    sam = console.sam
    sam.get(f"{console.base}/ui/admin")
    submit(sam, sam.find_element(By.CSS_SELECTOR, f"#active-grants tr[data-id='{console.request_id}'] button.revoke"))
    t0 = time.monotonic()
    status = 200
    while time.monotonic() - t0 < 5:
        status = console.s.request("GET", "/orders/1", {"authorization": f"Bearer {console.token}"}).status
        if status == 401:
            break
        time.sleep(0.05)
    assert status == 401, f"{status} after {time.monotonic() - t0:.2f} s"


def test_bob_is_no_admin_403(console):
    console.bob.get(f"{console.base}/ui/admin")
    assert "for admins" in console.bob.page_source


# Login CSRF: bob signs in at the provider and stops before the redirect; whoever follows his
# callback URL without his sign-in's cookie is signed in as nobody.

@pytest.fixture(scope="module")
def victim(console, browser):
    return browser("victim")


def test_bobs_callback_url_opened_in_another_browser_signed_in_as_nobody(console, victim):
    """The sign-in page again."""
    callback, _ = stopped_before_callback(console.port, "bob")
    victim.get(callback)
    victim.get(f"{console.base}/ui/")
    at_sign_in = bool(victim.find_elements(By.ID, "password"))
    assert at_sign_in and victim.get_cookie("jitgate_console") is None, \
        "sign-in page" if at_sign_in else victim.find_element(By.TAG_NAME, "body").text[:80]


def test_completed_by_a_client_without_the_sign_ins_cookie_4xx_and_no_session(console):
    callback, _ = stopped_before_callback(console.port, "bob")
    status, _, set_cookies, _ = plain(console.port, "GET", path_of(callback))
    assert 400 <= status < 500 and not session_set(set_cookies), f"{status}, cookies {sorted(set_cookies)}"


def test_completed_by_the_client_that_started_it_signed_in(console):
    callback, jar = stopped_before_callback(console.port, "bob")
    status, _, set_cookies, _ = plain(console.port, "GET", path_of(callback), cookies=jar)
    assert status == 303 and session_set(set_cookies), f"{status}"


# 1,000 sign-ins started from one address (no credentials needed) crowd nobody else out.

def test_1000_sign_ins_started_from_127_0_0_2_are_each_sent_to_the_provider(console):
    statuses = {plain(console.port, "GET", "/ui/login", source="127.0.0.2")[0] for _ in range(1000)}
    assert statuses == {303}, f"{statuses}"


def test_then_alice_from_127_0_0_1_signs_in_in_her_browser(console, victim):
    try:
        ok, seen = sign_in(victim, console.base, "alice"), ""
    except TimeoutException:
        ok, seen = False, victim.find_element(By.TAG_NAME, "body").text[:100]
    assert ok, seen


def test_after_1000_junk_user_names_six_wrong_passwords_lock_erin_out_right_password_or_not(console):
    """Failures for 1,000 made-up user names first, then six wrong passwords for erin: locked out."""
    port = console.port
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
    assert junk == {401} and wrong == [401] * 5 + [429] and right[0] == 429 and "Too many attempts" in right[3], \
        f"junk {junk}, wrong {wrong}, then the right one {right[0]}"


def test_over_https_signed_in_with_host_cookies_secure_path_for_the_sign_in_and_the_session(console, browser):
    """The console served over https: the sign-in and session cookies are `__Host-` cookies
    (Secure, Path=/, no Domain), so a sibling subdomain cannot plant one; a real browser signs in."""
    d = console.work / "https"
    d.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", "tls.key", "-out", "tls.pem"], cwd=d, check=True, capture_output=True)
    port = free_port()
    base = f"https://127.0.0.1:{port}"
    sc = Sidecar(d, port=port, dev_users=USERS,
                 extra=f"tls: {{cert_file: tls.pem, key_file: tls.key}}\nconsole: {{public_url: '{base}'}}\n").start()
    b = browser("https", "--ignore-certificate-errors")
    try:
        b.get(f"{base}/ui/")
        WebDriverWait(b, 10).until(lambda d: d.find_elements(By.ID, "password"))
        binding = b.get_cookie("__Host-jitgate_signin")
        b.find_element(By.ID, "username").send_keys("alice")
        b.find_element(By.ID, "password").send_keys(USERS["alice"][1])
        submit(b, b.find_element(By.ID, "sign-in"))
        WebDriverWait(b, 10).until(lambda d: d.find_elements(By.ID, "whoami") or d.find_elements(By.ID, "error"))
        who = [e.text for e in b.find_elements(By.ID, "whoami")]
        session = b.get_cookie("__Host-jitgate_console")
        plain_cookie = b.get_cookie("jitgate_console")
    finally:
        b.quit()
        sc.stop()
    assert who and "alice" in who[0] and binding and binding.get("secure") and binding.get("path") == "/" \
        and binding.get("httpOnly") \
        and session and session.get("secure") and session.get("path") == "/" and session.get("httpOnly") \
        and plain_cookie is None, \
        f"sign-in {binding and {k: binding[k] for k in ('path', 'secure')}}, " \
        f"session {session and {k: session[k] for k in ('path', 'secure', 'httpOnly')}}"


# A second sidecar whose console signs people in at an external OpenID provider; it signs tokens
# with the first one's keys (shared keys_dir), so the same Envoy accepts them.

@pytest.fixture(scope="module")
def provider(console, browser):
    work, sc = console.work, console.sc
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
    sign_in_cfg = {"oidc": {"issuer": issuer, "client_id": "jitgate-console", "client_secret_file": "client-secret",
                            "scopes": ["roles"]}}
    extra = f"keys_dir: {sc.dir / 'data'}\nconsole: {json.dumps({'public_url': base, 'sign_in': sign_in_cfg})}\n"
    issuers = [{"issuer": issuer, "audience": "jitgate-console", "jwks_url": f"{issuer}/jwks", "groups_claim": "roles"}]
    oidc = Sidecar(second, port=port, extra=extra, issuers=issuers, secret_file=sc.secret_file)
    try:
        wait_port(idp_port, idp, "the test OpenID provider")
        oidc.start()
        yield SimpleNamespace(base=base, issuer=issuer, oidc=oidc, carol=browser("carol"))
    finally:
        oidc.stop()
        idp.terminate()
        idp.wait(timeout=10)


def test_the_console_sends_carol_to_the_external_providers_sign_in_page(provider):
    carol = provider.carol
    carol.get(f"{provider.base}/ui/")
    WebDriverWait(carol, 10).until(lambda d: d.find_elements(By.ID, "idp-password"))
    assert carol.current_url.startswith(provider.issuer), carol.current_url.split("?")[0]


def test_the_provider_refuses_a_wrong_password(provider):
    carol = provider.carol
    carol.find_element(By.ID, "idp-username").send_keys("carol")
    carol.find_element(By.ID, "idp-password").send_keys("not-her-password")
    submit(carol, carol.find_element(By.ID, "idp-sign-in"))
    assert carol.find_elements(By.ID, "idp-error")


def test_carol_is_signed_in_to_the_console_through_the_provider_code_pkce_nonce(provider):
    carol = provider.carol
    carol.find_element(By.ID, "idp-username").send_keys("carol")
    carol.find_element(By.ID, "idp-password").send_keys("carol-password-1")
    submit(carol, carol.find_element(By.ID, "idp-sign-in"))
    WebDriverWait(carol, 10).until(lambda d: d.find_elements(By.ID, "whoami") or d.find_elements(By.ID, "error"))
    who = carol.find_elements(By.ID, "whoami")
    assert who and "carol" in who[0].text, who[0].text if who else carol.find_element(By.TAG_NAME, "body").text[:300]


def test_her_roles_claim_became_her_groups_sre_may_ask_for_orders_read(provider):
    assert provider.carol.find_elements(By.CSS_SELECTOR, "#scope option[value='orders:read']")


def test_her_console_token_exchanged_from_the_providers_id_token_passes_envoy_200(provider, console):
    carol = provider.carol
    Select(carol.find_element(By.ID, "scope")).select_by_value("orders:read")
    submit(carol, carol.find_element(By.ID, "ask"))
    row = carol.find_element(By.CSS_SELECTOR, "#my-requests tbody tr")
    submit(carol, row.find_element(By.CSS_SELECTOR, "button.get-token"))
    token = carol.find_element(By.ID, "token").get_attribute("value").strip()
    r = console.s.request("GET", "/catalog/1", {"authorization": f"Bearer {token}"})
    assert r.status == 200, f"{r.status}"


def test_the_sign_in_is_audited_under_the_providers_issuer(provider):
    audit = [json.loads(line)["event"] for line in provider.oidc.audit_text().splitlines()]
    signed = [e for e in audit if e.get("event") == "identity.signed_in"]
    assert signed and signed[0]["iss"] == provider.issuer and signed[0]["sub"] == "carol", f"{signed[:1]}"
