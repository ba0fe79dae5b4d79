//! Paths written in YAML files, as the machine that reads them sees them.

use std::path::PathBuf;

/// `~/rest` as `$HOME/rest`; any other path unchanged. Runner and spec files name per-user
/// installs this way (the vLLM virtual environment, the tiny test model), which the rendered
/// script and `run-cell` then find as absolute paths.
pub fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_leading_tilde_slash_is_the_home_directory() {
        let home = PathBuf::from(std::env::var_os("HOME").expect("HOME is set in tests"));
        assert_eq!(expand_home("~/a/b"), home.join("a/b"));
        assert_eq!(expand_home("/x/~/y"), PathBuf::from("/x/~/y"));
        assert_eq!(expand_home("~user/x"), PathBuf::from("~user/x"));
        assert_eq!(expand_home("models/m"), PathBuf::from("models/m"));
    }
}
