//! Bind every Envoy callback when the module is loaded (`-z now`): an Envoy that lacks one the
//! module uses then refuses to load it, instead of failing at the first call on a worker.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,now");
}
