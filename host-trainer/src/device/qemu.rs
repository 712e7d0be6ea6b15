//! The QEMU boards (mps2-an386, `qemu`; netduinoplus2, `stm32f405`) as devices on the desk:
//! builds a board's firmware, boots it with a model in its MODEL region and a host file as
//! its flash store, and gives its UART as a loopback TCP port. Used by `ldl demo` and by the
//! end-to-end tests, so both boot the device the same way.
//!
//! The model goes in with QEMU's `-device loader` at the MODEL origin of `firmware/boards.toml`
//! (as if flashed on its own); the store path and `serial` reach the firmware on the
//! semihosting command line (`firmware/src/board/qemu.rs`). QEMU runs under `timeout`, so a
//! forgotten QEMU cannot outlive its safety limit; dropping a [`Qemu`] stops it.

use super::{AnyClient, DeviceError};
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The firmware's crate folder.
pub fn firmware_dir() -> PathBuf {
    crate::repo_root().join("firmware")
}

/// Where the firmware of `board` is built: `target/` for the default board (`qemu`),
/// `target/<board>/` for the others (as the `build-stm32` and `build-nrf` aliases do).
pub fn target_dir(board: &str) -> PathBuf {
    let t = firmware_dir().join("target");
    if board == "qemu" {
        t
    } else {
        t.join(board)
    }
}

/// Builds the firmware of `board` (`cargo build --release` in `firmware/` with the board's
/// feature, quick when up to date) and returns its ELF. Needs the `thumbv7em-none-eabihf`
/// target, which `rust-toolchain.toml` makes rustup install.
pub fn build_firmware(board: &str) -> Result<PathBuf> {
    let fw = firmware_dir();
    if !fw.join("Cargo.toml").is_file() {
        bail!("no firmware crate at {} (run from a clone of the repository)", fw.display());
    }
    crate::models::boards::board(board)?;
    let dir = target_dir(board);
    let mut args: Vec<String> = ["build", "--release", "--quiet"].map(String::from).to_vec();
    if board != "qemu" {
        args.extend(["--no-default-features".into(), "--features".into(), format!("board-{board}")]);
    }
    args.extend(["--target-dir".into(), dir.display().to_string()]);
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(&args)
        .current_dir(&fw)
        // The firmware has its own target and flags (firmware/.cargo/config.toml).
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .with_context(|| format!("cannot run cargo in {}", fw.display()))?;
    if !out.status.success() {
        bail!(
            "building the firmware (`cargo build --release` in {}) failed ({}); it needs the \
             thumbv7em-none-eabihf target (rustup target add thumbv7em-none-eabihf):\n{}",
            fw.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let elf = dir.join("thumbv7em-none-eabihf/release/ldl-firmware");
    if !elf.is_file() {
        bail!("the firmware build gave no {}", elf.display());
    }
    Ok(elf)
}

/// Checks that `qemu-system-arm` runs.
pub fn check_qemu() -> Result<()> {
    match Command::new("qemu-system-arm").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => bail!("qemu-system-arm not found: install it (Debian/Ubuntu: sudo apt-get install -y qemu-system-arm)"),
    }
}

/// How to boot.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    /// The board (a key of `firmware/boards.toml` whose target is `qemu:<machine>`).
    pub board: String,
    /// The firmware ELF ([`build_firmware`] of that board).
    pub elf: PathBuf,
    /// The model file loaded at the MODEL region (`None`: an empty region).
    pub model: Option<PathBuf>,
    /// The host file backing the enrolled-class store (created erased if missing).
    pub store: PathBuf,
    /// QEMU's output (the raw defmt stream and QEMU's own messages).
    pub log: PathBuf,
    /// QEMU is killed after this long whatever happens.
    pub limit: Duration,
    /// The UART on a pseudo-terminal (`-serial pty`, reached as a serial port) instead of
    /// a loopback TCP port.
    pub pty: bool,
}

/// A running QEMU with the firmware, its UART on a loopback TCP port.
pub struct Qemu {
    child: Child,
    /// The UART: `tcp:127.0.0.1:PORT` or the pty's path.
    link: String,
    log: PathBuf,
}

/// How long QEMU may take to announce its pty.
const PTY_WAIT: Duration = Duration::from_secs(20);

/// The pty QEMU announces in its log ("char device redirected to /dev/pts/N (label
/// serial0)"). The log is bytes, not text: the firmware's binary defmt frames follow on the
/// same stream, and a strict UTF-8 read of it came back empty once they had arrived.
fn announced_pty(log: &[u8]) -> Option<String> {
    const MARK: &[u8] = b"redirected to /dev/";
    let at = log.windows(MARK.len()).position(|w| w == MARK)?;
    let rest = &log[at + MARK.len() - "/dev/".len()..];
    let end = rest.iter().position(|b| b.is_ascii_whitespace())?;
    std::str::from_utf8(&rest[..end]).ok().map(str::to_string)
}

/// A path QEMU's option syntax can carry (no commas or blanks).
fn qemu_path(p: &Path) -> Result<String> {
    let s = p.to_str().ok_or_else(|| anyhow!("{}: not UTF-8", p.display()))?;
    if s.contains(',') || s.contains(char::is_whitespace) {
        bail!("{s}: QEMU cannot take a path with commas or blanks");
    }
    Ok(s.to_string())
}

impl Qemu {
    /// Boots the firmware.
    pub fn boot(cfg: &QemuConfig) -> Result<Qemu> {
        check_qemu()?;
        let board = crate::models::boards::board(&cfg.board)?;
        let Some(machine) = board.qemu_machine() else {
            bail!("board {:?} is not emulated by QEMU (its target is {})", cfg.board, board.target)
        };
        let mut args: Vec<String> = ["-machine", machine, "-nographic", "-monitor", "none"].map(String::from).to_vec();
        // mps2-an386 takes its CPU as an option; the SoC boards have theirs built in.
        if machine == "mps2-an386" {
            args.extend(["-cpu".into(), "cortex-m4".into()]);
        }
        let mut link = String::new();
        if cfg.pty {
            args.extend(["-serial".into(), "pty".into()]);
        } else {
            // A free port: bound by us, released, then taken by QEMU.
            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            args.extend(["-serial".into(), format!("tcp:127.0.0.1:{port},server,nowait")]);
            link = format!("tcp:127.0.0.1:{port}");
        }
        if let Some(model) = &cfg.model {
            let len = std::fs::metadata(model).with_context(|| format!("{}", model.display()))?.len();
            if len > board.model.size {
                bail!(
                    "{}: {len} bytes, the MODEL region of {} holds {}",
                    model.display(),
                    cfg.board,
                    board.model.size
                );
            }
            args.extend([
                "-device".into(),
                format!("loader,file={},addr={:#010x}", qemu_path(model)?, board.model.origin),
            ]);
        }
        args.extend([
            "-semihosting-config".into(),
            format!(
                "enable=on,target=native,arg=ldl-firmware,arg=serial,arg=store={}",
                qemu_path(&cfg.store)?
            ),
        ]);
        args.extend(["-kernel".into(), qemu_path(&cfg.elf)?]);
        let logf = std::fs::File::create(&cfg.log).with_context(|| format!("{}", cfg.log.display()))?;
        let child = Command::new("timeout")
            .args(["-k", "5", &cfg.limit.as_secs().max(1).to_string(), "qemu-system-arm"])
            .args(&args)
            .stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf)
            .spawn()
            .context("cannot start qemu-system-arm")?;
        let mut q = Qemu {
            child,
            link,
            log: cfg.log.clone(),
        };
        if cfg.pty {
            let t0 = Instant::now();
            loop {
                let log = std::fs::read(&q.log).unwrap_or_default();
                if let Some(pty) = announced_pty(&log) {
                    q.link = pty;
                    break;
                }
                if t0.elapsed() > PTY_WAIT || !matches!(q.child.try_wait(), Ok(None)) {
                    bail!(
                        "QEMU did not open a pty; its log {}:\n{}",
                        q.log.display(),
                        String::from_utf8_lossy(&log)
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(q)
    }

    /// The UART, as `ldl device --port` takes it: `tcp:127.0.0.1:PORT` or a pty's path.
    pub fn port_spec(&self) -> &str {
        &self.link
    }

    /// QEMU's log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Connects to the firmware (waiting up to `wait` for QEMU to listen and for each reply)
    /// and checks its protocol version; the error carries QEMU's state and log.
    pub fn client(&mut self, wait: Duration) -> Result<AnyClient> {
        super::connect(&self.link, 115_200, wait).map_err(|e: DeviceError| {
            let status = self.child.try_wait();
            anyhow!(
                "cannot talk to the firmware in QEMU: {e} (QEMU: {status:?}); log {}:\n{}",
                self.log.display(),
                String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default())
            )
        })
    }

    /// Stops QEMU (as a power cut or reset does to a board): the store file keeps what the
    /// firmware wrote.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        // The child is `timeout`, which passes a SIGTERM on to QEMU and exits (a SIGKILL
        // would orphan QEMU); SIGKILL only if that did not end it.
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::announced_pty;

    #[test]
    fn the_pty_is_found_in_a_log_that_carries_binary_defmt_frames() {
        let mut log = b"char device redirected to /dev/pts/7 (label serial0)\n".to_vec();
        log.extend_from_slice(&[0x00, 0x07, 0xff, 0xfe, 0x80, b'j']);
        assert!(std::str::from_utf8(&log).is_err(), "the test needs a non-UTF-8 log");
        assert_eq!(announced_pty(&log).as_deref(), Some("/dev/pts/7"));
        assert_eq!(announced_pty(b"qemu-system-arm: -serial pty: failed\n"), None);
        // Announced but cut before its end: not yet a path.
        assert_eq!(announced_pty(b"char device redirected to /dev/pts/1"), None);
    }
}
