//! Starts `kvsweep sim-server` on a free port for a test and stops it afterwards.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct SimServer {
    child: Child,
    pub base: String,
}

impl SimServer {
    /// Starts the server with `args` (plus `--port 0`) and waits for its ready line.
    pub fn start(args: &[&str]) -> SimServer {
        Self::start_exactly(&[&["--port", "0"], args].concat())
    }

    /// Starts the server with `args` alone (its default port is 8000) and waits for its ready line.
    pub fn start_exactly(args: &[&str]) -> SimServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kvsweep"))
            .arg("sim-server")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sim-server starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("ready line");
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in ready line `{line}`"))
            .to_owned();
        SimServer { child, base }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends SIGTERM and returns the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        self.child.wait().expect("wait")
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of a `/metrics` sample with labels, matched by name and an optional label fragment.
pub fn sample(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} {label}"))
}
