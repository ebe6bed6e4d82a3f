//! `BERTH_E2E=1` turns on the end-to-end tests: with it unset they are compiled `#[ignore]`d
//! (cfg `berth_e2e` off), so `cargo test` reports them as ignored instead of passing them.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(berth_e2e)");
    println!("cargo::rerun-if-env-changed=BERTH_E2E");
    match std::env::var("BERTH_E2E").as_deref() {
        Ok("1") => println!("cargo::rustc-cfg=berth_e2e"),
        Ok("") | Err(_) => {}
        Ok(other) => panic!("BERTH_E2E={other:?}: set it to 1 to run the real tests, or unset it"),
    }
}
