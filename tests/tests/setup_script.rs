//! `scripts/setup.sh`, which `demo.sh`, `test-all.sh` and `firmware/ci.sh` source before they
//! build anything, on a machine like a fresh one: the pinned toolchain without the Cortex-M
//! target (rustup's automatic installation off), no QEMU, no defmt-print.
//!
//! The scripts run with a `PATH` of fakes that record every call in one log, in order:
//! `rustup` (its installed targets and components in files), `apt-get` (installs a fake
//! `qemu-system-arm`), `cargo` (`cargo install` makes a fake `defmt-print`; any other call is
//! the build), `sudo` and `id`; plus the few real tools the scripts use.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const HOST: &str = "x86_64-unknown-linux-gnu";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The first executable named `name` on this process's `PATH`.
fn real(name: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not on PATH"))
}

/// The `targets` of `rust-toolchain.toml` (one line: `targets = ["a", "b"]`).
fn pinned_targets() -> Vec<String> {
    let toml = fs::read_to_string(repo().join("rust-toolchain.toml")).unwrap();
    let line = toml
        .lines()
        .find(|l| l.trim_start().starts_with("targets"))
        .expect("a targets line");
    line.split('"').skip(1).step_by(2).map(String::from).collect()
}

/// A machine: a folder of fakes (the whole `PATH`) and the log they write.
struct Machine {
    _dir: tempfile::TempDir,
    bin: PathBuf,
    log: PathBuf,
    state: PathBuf,
    uid: u32,
    /// `rustup target add` fails (no network, say).
    target_add_fails: bool,
}

impl Machine {
    /// The pinned toolchain with `components`, only the host's target; no QEMU, no
    /// defmt-print; user id `uid`; `sudo` when `with_sudo`.
    fn new(components: &[&str], uid: u32, with_sudo: bool) -> Machine {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        let state = dir.path().join("state");
        fs::create_dir_all(&bin).unwrap();
        fs::create_dir_all(&state).unwrap();
        let log = dir.path().join("calls.log");
        for tool in ["bash", "grep", "dirname", "head", "env", "cat"] {
            std::os::unix::fs::symlink(real(tool), bin.join(tool)).unwrap();
        }
        fs::write(state.join("targets"), format!("{HOST}\n")).unwrap();
        let comps: String = components.iter().map(|c| format!("{c}-{HOST}\n")).collect();
        fs::write(state.join("components"), format!("cargo-{HOST}\nrustc-{HOST}\n{comps}")).unwrap();
        Machine {
            _dir: dir,
            bin,
            log,
            state,
            uid,
            target_add_fails: false,
        }
        .with_fakes(with_sudo)
    }

    fn fake(&self, name: &str, body: &str) {
        let p = self.bin.join(name);
        let bash = real("bash");
        fs::write(&p, format!("#!{}\necho \"{name} $*\" >>\"$FAKE_LOG\"\n{body}\n", bash.display())).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn with_fakes(self, with_sudo: bool) -> Machine {
        let toolchain = format!("1.95.0-{HOST}");
        self.fake(
            "rustup",
            &format!(
                r#"S="$FAKE_STATE"
case "$1 $2" in
  "show active-toolchain") echo "{toolchain} (overridden by '$PWD/rust-toolchain.toml')" ;;
  "target list") cat "$S/targets" ;;
  "target add")
    [ -n "$FAKE_TARGET_ADD_FAILS" ] && {{ echo "error: could not download" >&2; exit 1; }}
    echo "${{@: -1}}" >>"$S/targets" ;;
  "component list") cat "$S/components" ;;
  "component add") echo "${{@: -1}}-{HOST}" >>"$S/components" ;;
  *) echo "fake rustup: $*" >&2; exit 1 ;;
esac"#
            ),
        );
        let qemu = self.bin.join("qemu-system-arm");
        let bash = real("bash");
        self.fake(
            "apt-get",
            &format!(
                r#"[ "$1" = install ] || exit 0
printf '#!{}\necho "QEMU emulator version 9.9.9 (fake)"\n' >"{q}"
chmod +x "{q}""#,
                bash.display(),
                q = qemu.display()
            ),
        );
        let defmt = self.bin.join("defmt-print");
        self.fake(
            "cargo",
            &format!(
                r#"if [ "$1" = install ]; then
  printf '#!{}\necho "defmt-print 1.0.0 (fake)"\n' >"{d}"
  chmod +x "{d}"
  exit 0
fi
exit "${{FAKE_BUILD_EXIT:-0}}""#,
                bash.display(),
                d = defmt.display()
            ),
        );
        self.fake("id", r#"[ "$1" = -u ] && echo "$FAKE_UID""#);
        // A real chmod for the fakes that install something.
        std::os::unix::fs::symlink(real("chmod"), self.bin.join("chmod")).unwrap();
        if with_sudo {
            self.fake("sudo", r#"exec "$@""#);
        }
        self
    }

    /// Runs `script` (relative to the repository) with `args` on this machine.
    fn run(&self, script: &str, args: &[&str], build_exit: u8) -> Output {
        let mut c = Command::new(real("bash"));
        c.arg(repo().join(script))
            .args(args)
            .current_dir(repo())
            .env_clear()
            .env("PATH", &self.bin)
            .env("HOME", self.state.as_os_str())
            .env("RUSTUP_AUTO_INSTALL", "0")
            .env("FAKE_LOG", &self.log)
            .env("FAKE_STATE", &self.state)
            .env("FAKE_UID", self.uid.to_string())
            .env("FAKE_BUILD_EXIT", build_exit.to_string());
        if self.target_add_fails {
            c.env("FAKE_TARGET_ADD_FAILS", "1");
        }
        c.output().expect("run bash")
    }

    /// `source scripts/setup.sh; ldl_setup ARGS`.
    fn setup(&self, args: &str) -> Output {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path().join("run-setup.sh");
        fs::write(
            &s,
            format!(
                "set -euo pipefail\nsource {}/scripts/setup.sh\nldl_setup {args}\n",
                repo().display()
            ),
        )
        .unwrap();
        self.run(s.to_str().unwrap(), &[], 0)
    }

    /// The calls so far, one per line.
    fn calls(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    fn targets(&self) -> String {
        fs::read_to_string(self.state.join("targets")).unwrap()
    }
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// Index of the first call that starts with `prefix`.
fn first(calls: &[String], prefix: &str) -> Option<usize> {
    calls.iter().position(|c| c.starts_with(prefix))
}

#[test]
fn setup_adds_the_pinned_target_and_qemu_through_sudo() {
    let m = Machine::new(&[], 1000, true);
    let out = m.setup("--qemu");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let toolchain = format!("1.95.0-{HOST}");
    let calls = m.calls();
    for t in pinned_targets() {
        let add = format!("rustup target add --toolchain {toolchain} {t}");
        assert!(calls.contains(&add), "{add:?} not in {calls:#?}");
        assert!(m.targets().lines().any(|l| l == t), "{}", m.targets());
    }
    assert!(calls.contains(&"sudo apt-get update -qq".to_string()), "{calls:#?}");
    assert!(
        calls.contains(&"sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-system-arm".to_string()),
        "{calls:#?}"
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("adding the target thumbv7em-none-eabihf") && err.contains("installing qemu-system-arm"),
        "{err}"
    );

    // Everything is there now: a second run checks and installs nothing.
    let before = m.calls().len();
    let out = m.setup("--qemu");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let again = &m.calls()[before..];
    assert!(
        again
            .iter()
            .all(|c| !c.contains(" add ") && !c.starts_with("apt-get") && !c.starts_with("sudo")),
        "{again:#?}"
    );
    assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));
}

#[test]
fn setup_says_what_to_do_when_it_cannot_install() {
    // Not root and no sudo: QEMU cannot be installed.
    let m = Machine::new(&[], 1000, false);
    let out = m.setup("--qemu");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("apt-get install -y qemu-system-arm"), "{err}");
    assert!(first(&m.calls(), "apt-get").is_none(), "{:#?}", m.calls());

    // The target cannot be added: the script stops there.
    let mut m = Machine::new(&[], 0, true);
    m.target_add_fails = true;
    let out = m.setup("--qemu");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("rustup target add") && err.contains("thumbv7em-none-eabihf"), "{err}");
    assert!(first(&m.calls(), "apt-get").is_none(), "{:#?}", m.calls());
}

#[test]
fn demo_sh_installs_the_target_and_qemu_before_building() {
    let m = Machine::new(&[], 0, false);
    let out = m.run("demo.sh", &["--shots", "5"], 0);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let calls = m.calls();
    let build = first(&calls, "cargo run").unwrap_or_else(|| panic!("no build in {calls:#?}"));
    assert!(calls[build].ends_with("-- demo --shots 5"), "{}", calls[build]);
    let target = first(&calls, "rustup target add").unwrap_or_else(|| panic!("no target added: {calls:#?}"));
    let qemu = first(&calls, "apt-get install -y -qq qemu-system-arm").unwrap_or_else(|| panic!("no QEMU: {calls:#?}"));
    assert!(target < build && qemu < build, "{calls:#?}");
    assert_eq!(calls.iter().filter(|c| c.starts_with("cargo")).count(), 1, "{calls:#?}");

    // A real board needs no QEMU; the target still comes first. Without it, no build.
    let m = Machine::new(&[], 0, false);
    let out = m.run("demo.sh", &["--chip", "nRF52840_xxAA", "--port", "/dev/ttyACM0"], 0);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let calls = m.calls();
    assert!(first(&calls, "apt-get").is_none(), "{calls:#?}");
    assert!(first(&calls, "rustup target add").unwrap() < first(&calls, "cargo run").unwrap());
    let mut m = Machine::new(&[], 0, false);
    m.target_add_fails = true;
    let out = m.run("demo.sh", &[], 0);
    assert!(!out.status.success());
    assert!(first(&m.calls(), "cargo").is_none(), "{:#?}", m.calls());
}

#[test]
fn test_all_sh_installs_everything_before_building() {
    // clippy but not rustfmt or llvm-tools; the "build" fails, so the script stops at its
    // first cargo call after the setup.
    let m = Machine::new(&["clippy"], 0, false);
    let out = m.run("test-all.sh", &[], 1);
    assert!(!out.status.success(), "the fake build fails");
    let calls = m.calls();
    let build = calls
        .iter()
        .position(|c| c.starts_with("cargo") && !c.starts_with("cargo install"))
        .unwrap_or_else(|| panic!("no build: {calls:#?}\n{}", text(&out.stderr)));
    assert_eq!(calls[build], "cargo fmt --all --check");
    let toolchain = format!("1.95.0-{HOST}");
    for want in [
        format!("rustup target add --toolchain {toolchain} thumbv7em-none-eabihf"),
        format!("rustup component add --toolchain {toolchain} rustfmt"),
        format!("rustup component add --toolchain {toolchain} llvm-tools"),
        "apt-get install -y -qq qemu-system-arm".into(),
        "cargo install --locked defmt-print".into(),
    ] {
        let at = calls
            .iter()
            .position(|c| *c == want)
            .unwrap_or_else(|| panic!("{want:?} not in {calls:#?}"));
        assert!(at < build, "{want:?} after the build: {calls:#?}");
    }
    let clippy = format!("rustup component add --toolchain {toolchain} clippy");
    assert!(!calls.contains(&clippy), "clippy is installed: {calls:#?}");
}
