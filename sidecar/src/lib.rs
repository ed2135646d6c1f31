//! jitgate-sidecar: decides who may hold which JIT token, for how long, on whose approval
//! (docs/architecture.md §5-§7). `App` is the shared state; `server` builds the router (the API
//! and the console) and runs it.

pub mod api;
pub mod app;
pub mod auth;
pub mod blocking;
pub mod clock;
pub mod config;
pub mod console;
pub mod devidp;
pub mod dpop;
pub mod error;
pub mod export;
pub mod files;
pub mod grants;
pub mod handler;
pub mod identity;
pub mod ingest;
pub mod keys;
pub mod latency;
pub mod metrics;
pub mod notify;
pub mod outbound;
pub mod policy;
pub mod random;
pub mod redis_store;
pub mod refusal;
pub mod replay;
pub mod secret;
pub mod server;
pub mod store;
pub mod trail;
pub mod unavailable;

pub use app::App;
pub use clock::Clock;
