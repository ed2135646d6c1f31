//! What the console keeps while the sidecar runs: its way in, its sessions, the key that binds a
//! sign-in to its browser, and its cookies.

use super::binding::Binder;
use super::cookies::Cookies;
use super::sessions::Sessions;
use super::signin::SignIn;
use crate::config::ConsoleConfig;

#[derive(Debug)]
pub struct Console {
    /// The configured way in; none when the console is off.
    pub sign_in: Option<SignIn>,
    pub sessions: Sessions,
    pub binder: Binder,
    pub cookies: Cookies,
}

impl Console {
    /// `sign_in_key`: the secret sign-ins are bound with (see `binding`); `config`: the console's
    /// configuration, if it is on.
    pub fn new(sign_in_key: &[u8], config: Option<&ConsoleConfig>) -> Console {
        Console {
            sign_in: config.map(|c| SignIn::new(&c.sign_in)),
            sessions: Sessions::default(),
            binder: Binder::new(sign_in_key),
            cookies: Cookies::for_url(config.map(|c| c.public_url.as_str())),
        }
    }
}
