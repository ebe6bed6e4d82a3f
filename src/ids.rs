//! Names that must not collide: between two berth processes, and between two calls in one.
//! `<prefix>-<pid>-<random>`: the pid lets tests and sweeps tell whose a name is; the random
//! part, from the OS's source, keeps two calls in the same process (or a reused pid) apart.

/// A name unique to this call, e.g. `berth-probe-4711-9f2c01ab`.
pub fn unique(prefix: &str) -> String {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    let random: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{}-{random}", std::process::id())
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_carry_the_pid_and_differ() {
        let (a, b) = (super::unique("x"), super::unique("x"));
        assert!(a.starts_with(&format!("x-{}-", std::process::id())), "{a}");
        assert_ne!(a, b);
    }
}
