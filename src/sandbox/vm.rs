//! Level `vm`: a throwaway qemu virtual machine per run; the hypervisor enforces.
//!
//! Every run boots the configured kernel (qemu machine `pc`) from a fresh initramfs that chant builds (busybox,
//! the virtio modules, the agent image, chant's own `/init` and the job), so nothing a run
//! writes survives into the next (`snapshot: clean`). The clone goes in as a tar archive on
//! a read-only virtio disk; the guest unpacks it into a tmpfs `/workspace`, runs the agent as
//! uid 1000 with the filtered environment and no network device (`network: isolated`), and
//! writes the result as a tar archive to a second, raw disk. Chant reads that archive in
//! userspace as untrusted data — it never mounts anything the guest wrote — and puts its
//! files back into the clone for the usual policy check. No host path is visible inside.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use super::{process, GuestView, Job, Outcome, OutputSink, Sandbox, SandboxError, Stream};
use crate::config::{AgentConfig, SandboxLevel, VmAccel, VmConfig, VmProvider};

/// The agent's uid and gid inside the guest.
const AGENT_ID: u32 = 1000;
/// The result disk's size (sparse: only what the guest writes takes space).
const OUTPUT_DISK: u64 = 4 << 30;
/// Kernel modules the guest needs for its disks, in load order (built-in when absent).
const MODULES: &[&str] = &[
    "drivers/virtio/virtio_ring",
    "drivers/virtio/virtio",
    "drivers/virtio/virtio_pci_legacy_dev",
    "drivers/virtio/virtio_pci_modern_dev",
    "drivers/virtio/virtio_pci",
    "drivers/block/virtio_blk",
];

/// A qemu virtual machine per run.
pub struct Vm {
    config: VmConfig,
    qemu: PathBuf,
    kernel: PathBuf,
    modules: Vec<PathBuf>,
    busybox: PathBuf,
    max_file: u64,
}

impl Vm {
    /// Checks that the provider, kernel and busybox are installed.
    pub fn new(agent: &AgentConfig) -> Result<Vm, SandboxError> {
        let config = agent.vm.clone();
        let path = std::env::var("PATH").unwrap_or_default();
        let qemu = match config.provider {
            VmProvider::Qemu => {
                process::find_program("qemu-system-x86_64", &path).ok_or_else(|| {
                    missing(
                        "qemu-system-x86_64",
                        "install qemu (Debian: apt-get install qemu-system-x86)",
                    )
                })?
            }
            VmProvider::Firecracker | VmProvider::Virtualbox => {
                let (bin, pkg) = match config.provider {
                    VmProvider::Firecracker => ("firecracker", "firecracker"),
                    _ => ("VBoxManage", "VirtualBox"),
                };
                return Err(match process::find_program(bin, &path) {
                    None => missing(bin, &format!("install {pkg}, or set agent.vm.provider: qemu")),
                    Some(_) => SandboxError::Vm(format!(
                        "agent.vm.provider {} is not supported by this build yet; set agent.vm.provider: qemu",
                        config.provider
                    )),
                });
            }
        };
        let kernel = match &config.kernel {
            Some(k) if k.is_file() => k.clone(),
            Some(k) => return Err(missing(&k.display().to_string(), "agent.vm.kernel names no file; fix the path")),
            None => newest_kernel().ok_or_else(|| {
                missing("/boot/vmlinuz-*", "install a kernel (Debian: apt-get install linux-image-cloud-amd64) or set agent.vm.kernel")
            })?,
        };
        let modules = kernel_modules(&kernel)?;
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .iter()
            .map(PathBuf::from)
            .find(|p| is_static_elf(p))
            .ok_or_else(|| {
                missing(
                    "a static busybox",
                    "install Debian's busybox-static (apt-get install busybox-static)",
                )
            })?;
        if let Some(image) = &config.image {
            if !image.exists() {
                return Err(missing(
                    &image.display().to_string(),
                    "agent.vm.image names nothing; give a directory or a .tar",
                ));
            }
        }
        Ok(Vm {
            config,
            qemu,
            kernel,
            modules,
            busybox,
            max_file: agent.file_access.max_file_size.bytes(),
        })
    }

    fn accel(&self) -> &'static str {
        match self.config.accel {
            VmAccel::Kvm => "kvm",
            VmAccel::Tcg => "tcg",
            VmAccel::Auto => {
                if kvm_works(self) {
                    "kvm"
                } else {
                    "tcg"
                }
            }
        }
    }

    fn qemu_argv(
        &self,
        accel: &str,
        initrd: &Path,
        disks: &[(&Path, bool)],
        append: &str,
    ) -> Vec<String> {
        let mut argv: Vec<String> = vec![
            self.qemu.display().to_string(),
            "-machine".into(),
            // `pc`, not `microvm`: under TCG on a loaded host the microvm guest's TSC
            // calibration fails and its clock never ticks; `pc` has the PIT and HPET.
            format!("pc,accel={accel}"),
            "-m".into(),
            format!("{}M", (self.config.memory.bytes() >> 20).max(64)),
            "-smp".into(),
            self.config.cpu.to_string(),
            "-no-user-config".into(),
            "-nographic".into(),
            "-no-reboot".into(),
            "-nic".into(),
            "none".into(),
            "-kernel".into(),
            self.kernel.display().to_string(),
            "-initrd".into(),
            initrd.display().to_string(),
            "-append".into(),
            append.into(),
        ];
        for (i, (disk, read_only)) in disks.iter().enumerate() {
            argv.push("-drive".into());
            argv.push(format!(
                "id=d{i},file={},format=raw,if=none{}",
                disk.display().to_string().replace(',', ",,"),
                if *read_only { ",readonly=on" } else { "" }
            ));
            argv.push("-device".into());
            argv.push(format!("virtio-blk-pci,drive=d{i}"));
        }
        argv
    }

    /// The initramfs for one run: busybox, modules, the image, `/init` and the job.
    fn initramfs(&self, path: &Path, job: Option<&Job>) -> Result<(), SandboxError> {
        let mut cpio = Cpio::create(path)?;
        for dir in [
            "bin",
            "dev",
            "proc",
            "sys",
            "tmp",
            "workspace",
            "home",
            "home/agent",
            "run",
            "run/chant",
            "lib",
            "lib/modules",
            "chant",
            "usr",
            "usr/bin",
            "usr/local",
            "usr/local/bin",
            "etc",
        ] {
            cpio.dir(dir, if dir == "chant" { 0o700 } else { 0o755 })?;
        }
        cpio.file("bin/busybox", &std::fs::read(&self.busybox)?, 0o755)?;
        for module in &self.modules {
            let name = module
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("m.ko");
            cpio.file(
                &format!("lib/modules/{name}"),
                &std::fs::read(module)?,
                0o644,
            )?;
        }
        cpio.file(
            "etc/passwd",
            format!(
                "root:x:0:0::/root:/bin/sh\nagent:x:{AGENT_ID}:{AGENT_ID}::/home/agent:/bin/sh\n"
            )
            .as_bytes(),
            0o644,
        )?;
        cpio.file(
            "etc/group",
            format!("root:x:0:\nagent:x:{AGENT_ID}:\n").as_bytes(),
            0o644,
        )?;
        if let Some(image) = &self.config.image {
            add_image(&mut cpio, image)?;
        }
        cpio.file(
            "bin/chant-exec",
            b"#!/bin/sh\necho \"chant: the command gate is not available inside the vm level (the hypervisor contains the agent)\" >&2\nexit 126\n",
            0o755,
        )?;
        cpio.file("init", INIT.as_bytes(), 0o755)?;
        if let Some(job) = job {
            for (guest_path, bytes) in &job.files {
                let rel = guest_path.strip_prefix("/").unwrap_or(guest_path);
                cpio.file(&rel.to_string_lossy(), bytes, 0o644)?;
            }
            cpio.file("chant/job.sh", job_script(job).as_bytes(), 0o700)?;
        }
        cpio.finish()?;
        Ok(())
    }
}

impl Sandbox for Vm {
    fn level(&self) -> SandboxLevel {
        SandboxLevel::Vm
    }

    fn guest(&self) -> Option<GuestView> {
        Some(GuestView {
            workspace: PathBuf::from("/workspace"),
            home: PathBuf::from("/home/agent"),
            path: "/usr/local/bin:/usr/bin:/bin".into(),
            files_dir: PathBuf::from("/run/chant"),
            exec: PathBuf::from("/bin/chant-exec"),
        })
    }

    fn preflight(&self, argv: &[String]) -> Result<(), SandboxError> {
        let program = argv.first().cloned().unwrap_or_default();
        if program.is_empty() {
            return Err(SandboxError::ProgramNotFound { program });
        }
        // A busybox applet, or a file of the image.
        if !program.contains('/') && busybox_has(&self.busybox, &program) {
            return Ok(());
        }
        let in_image = self
            .config
            .image
            .as_deref()
            .is_some_and(|image| image_has(image, &program));
        if in_image {
            Ok(())
        } else {
            Err(SandboxError::NotInImage { program })
        }
    }

    fn run(
        &self,
        job: &Job,
        sink: &mut dyn OutputSink,
        stop: &Arc<AtomicBool>,
    ) -> Result<Outcome, SandboxError> {
        let tmp = tempfile::Builder::new().prefix("chant-vm-").tempdir()?;
        let input = tmp.path().join("input.tar");
        pack_workspace(&job.workspace, &input)?;
        let output = tmp.path().join("output.raw");
        std::fs::File::create(&output)?.set_len(OUTPUT_DISK)?;
        let initrd = tmp.path().join("initrd.cpio");
        self.initramfs(&initrd, Some(job))?;
        let qemu = Job {
            argv: self.qemu_argv(
                self.accel(),
                &initrd,
                &[(&input, true), (&output, false)],
                "console=ttyS0 quiet loglevel=1 panic=-1",
            ),
            env: vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())],
            workspace: tmp.path().to_path_buf(),
            timeout: job.timeout,
            files: Vec::new(),
            hold_stdin: true,
        };
        let mut console = Console {
            inner: sink,
            line: Vec::new(),
        };
        let outcome = process::run(&qemu, &mut console, stop)?;
        console.flush();
        if outcome != Outcome::Exited(0) {
            return Ok(match outcome {
                Outcome::Exited(code) => {
                    console.inner.output(
                        Stream::Stderr,
                        format!("chant: qemu exited with code {code}\n").as_bytes(),
                    );
                    Outcome::Exited(125)
                }
                other => other,
            });
        }
        let code = unpack_result(&output, &job.workspace, self.max_file)?;
        Ok(match code {
            Some(c) => Outcome::Exited(c),
            None => {
                console.inner.output(
                    Stream::Stderr,
                    b"chant: the vm produced no result (the guest did not finish)\n",
                );
                Outcome::Exited(125)
            }
        })
    }
}

/// The guest's `/init`: run as root, prepares, drops to the agent user, hands back.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
if grep -q chant.probe /proc/cmdline; then echo chant-probe-ok; poweroff -f; fi
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk; do [ -f /lib/modules/$m.ko ] && insmod /lib/modules/$m.ko; done
IN=; OUT=
for d in /sys/block/vd*; do
  n=${d##*/}
  if [ "$(cat $d/ro)" = 1 ]; then IN=/dev/$n; else OUT=/dev/$n; fi
done
mount -t tmpfs -o mode=0755 workspace /workspace
mount -t tmpfs -o mode=1777 tmp /tmp
mount -t tmpfs -o mode=0700 home /home/agent
tar -x -f "$IN" -C /workspace
chown -R 1000:1000 /workspace /home/agent
cd /workspace
sh /chant/job.sh
code=$?
kill -9 -1 2>/dev/null
mkdir -p /chant-result
echo "$code" > /chant-result/exit_code
cd /
tar -c -f "$OUT" chant-result workspace
sync
poweroff -f
"#;

/// The job as a root-only script: a clean environment and the agent's argv, run as the
/// `agent` user (uid 1000) by busybox `su`, which keeps the environment with `-p`.
fn job_script(job: &Job) -> String {
    let mut command = String::from("exec");
    for a in &job.argv {
        command.push(' ');
        command.push_str(&quote(a));
    }
    let mut s = String::from("#!/bin/sh\nexec env -i");
    for (k, v) in &job.env {
        s.push(' ');
        s.push_str(&quote(&format!("{k}={v}")));
    }
    s.push_str(" su -p -s /bin/sh agent -c ");
    s.push_str(&quote(&command));
    s.push('\n');
    s
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn missing(what: &str, fix: &str) -> SandboxError {
    SandboxError::Missing {
        what: what.to_string(),
        fix: fix.to_string(),
    }
}

/// The newest `/boot/vmlinuz-*` by modification time.
fn newest_kernel() -> Option<PathBuf> {
    std::fs::read_dir("/boot")
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"))
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
}

/// The virtio modules matching `kernel` (`vmlinuz-<version>` → `/lib/modules/<version>`).
fn kernel_modules(kernel: &Path) -> Result<Vec<PathBuf>, SandboxError> {
    let Some(version) = kernel
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
    else {
        return Ok(Vec::new());
    };
    let base = Path::new("/lib/modules").join(version).join("kernel");
    if !base.is_dir() {
        return Ok(Vec::new()); // a custom kernel: virtio assumed built in
    }
    let mut found = Vec::new();
    for m in MODULES {
        let plain = base.join(format!("{m}.ko"));
        if plain.is_file() {
            found.push(plain);
        } else if base.join(format!("{m}.ko.xz")).is_file()
            || base.join(format!("{m}.ko.zst")).is_file()
        {
            return Err(SandboxError::Vm(format!(
                "{} is compressed; busybox cannot load it — use a kernel with uncompressed modules or virtio built in (agent.vm.kernel)",
                base.join(m).display()
            )));
        }
    }
    Ok(found)
}

/// True for an ELF file with no program interpreter (statically linked).
fn is_static_elf(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().unwrap_or([0; 8])) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).all(|i| {
        let at = phoff + i * size;
        bytes
            .get(at..at + 4)
            .is_some_and(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) != 3)
    })
}

fn busybox_has(busybox: &Path, applet: &str) -> bool {
    std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l == applet)
        })
        .unwrap_or(false)
}

fn image_has(image: &Path, program: &str) -> bool {
    let rel = program.trim_start_matches('/');
    let candidates: Vec<String> = if program.contains('/') {
        vec![rel.to_string()]
    } else {
        ["bin", "usr/bin", "usr/local/bin"]
            .iter()
            .map(|d| format!("{d}/{rel}"))
            .collect()
    };
    if image.is_dir() {
        return candidates.iter().any(|c| image.join(c).is_file());
    }
    let Ok(file) = std::fs::File::open(image) else {
        return false;
    };
    let mut archive = tar::Archive::new(file);
    let Ok(entries) = archive.entries() else {
        return false;
    };
    entries.flatten().any(|e| {
        e.path()
            .map(|p| {
                let p = p.to_string_lossy().trim_start_matches("./").to_string();
                candidates.contains(&p)
            })
            .unwrap_or(false)
    })
}

/// Boots chant's initramfs (without a job) with the accelerator runs would use, straight to
/// power-off: the baseline the vm benchmark compares a whole run against.
pub fn bare_boot(agent: &AgentConfig) -> Result<Duration, SandboxError> {
    let vm = Vm::new(agent)?;
    let accel = vm.accel();
    let started = std::time::Instant::now();
    if probe_boot(&vm, accel, Duration::from_secs(120))? {
        Ok(started.elapsed())
    } else {
        Err(SandboxError::Vm(
            "the bare boot did not reach chant's init".into(),
        ))
    }
}

/// Boots the probe initramfs with `accel`; true when the guest reached chant's init.
fn probe_boot(vm: &Vm, accel: &str, timeout: Duration) -> Result<bool, SandboxError> {
    let tmp = tempfile::tempdir()?;
    let initrd = tmp.path().join("probe.cpio");
    vm.initramfs(&initrd, None)?;
    let job = Job {
        argv: vm.qemu_argv(
            accel,
            &initrd,
            &[],
            "console=ttyS0 quiet loglevel=1 panic=-1 chant.probe",
        ),
        env: vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())],
        workspace: tmp.path().to_path_buf(),
        timeout,
        files: Vec::new(),
        hold_stdin: true,
    };
    let mut seen = Collect(Vec::new());
    let outcome = process::run(&job, &mut seen, &Arc::new(AtomicBool::new(false)))?;
    Ok(
        outcome == Outcome::Exited(0)
            && String::from_utf8_lossy(&seen.0).contains("chant-probe-ok"),
    )
}

/// Whether a KVM guest really runs here: a short probe boot, remembered per kernel.
fn kvm_works(vm: &Vm) -> bool {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return false;
    }
    let cache = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(".cache/git-chant/kvm-probe");
    let key = vm.kernel.display().to_string();
    if let Ok(text) = std::fs::read_to_string(&cache) {
        if let Some(answer) = text.strip_prefix(&format!("{key} ")) {
            return answer.trim() == "yes";
        }
    }
    let works = probe_boot(vm, "kvm", Duration::from_secs(8)).unwrap_or(false);
    if let Some(dir) = cache.parent() {
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::write(
            &cache,
            format!("{key} {}\n", if works { "yes" } else { "no" }),
        );
    }
    works
}

struct Collect(Vec<u8>);

impl OutputSink for Collect {
    fn output(&mut self, _stream: Stream, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}

/// Passes the guest console on, line by line, without the kernel's own messages.
struct Console<'s> {
    inner: &'s mut dyn OutputSink,
    line: Vec<u8>,
}

impl Console<'_> {
    fn emit(&mut self) {
        let line = std::mem::take(&mut self.line);
        let text = String::from_utf8_lossy(&line);
        let kernel = text.trim_start_matches('\r').starts_with('[')
            && text
                .trim_start_matches(['\r', '[', ' '])
                .split(']')
                .next()
                .is_some_and(|t| {
                    t.contains('.') && t.chars().all(|c| c.is_ascii_digit() || c == '.')
                });
        if !kernel {
            self.inner.output(Stream::Stdout, &line);
        }
    }

    fn flush(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
    }
}

impl OutputSink for Console<'_> {
    fn output(&mut self, _stream: Stream, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\r' {
                continue;
            }
            self.line.push(b);
            if b == b'\n' {
                self.emit();
            }
        }
    }
}

/// The workspace (without its `.git`) as a tar archive; the clone is still ours here.
fn pack_workspace(workspace: &Path, archive: &Path) -> Result<(), SandboxError> {
    let mut builder = tar::Builder::new(std::fs::File::create(archive)?);
    builder.follow_symlinks(false);
    for entry in std::fs::read_dir(workspace)? {
        let entry = entry?;
        if entry.file_name() == ".git" {
            continue;
        }
        let name = PathBuf::from(entry.file_name());
        if entry.file_type()?.is_dir() {
            builder.append_dir_all(&name, entry.path())?;
        } else {
            builder.append_path_with_name(entry.path(), &name)?;
        }
    }
    builder.into_inner()?.flush()?;
    Ok(())
}

/// Reads the guest's result archive (untrusted) and rebuilds the workspace from it; returns
/// the agent's exit code when the guest recorded one.
fn unpack_result(
    disk: &Path,
    workspace: &Path,
    max_file: u64,
) -> Result<Option<i32>, SandboxError> {
    // Start from an empty work tree (the clone's .git stays).
    for entry in std::fs::read_dir(workspace)? {
        let entry = entry?;
        if entry.file_name() != ".git" {
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
    }
    let mut archive = tar::Archive::new(std::fs::File::open(disk)?);
    let mut code = None;
    let mut links: Vec<PathBuf> = Vec::new();
    let mut count = 0usize;
    for entry in archive.entries()? {
        let mut entry = entry?;
        count += 1;
        if count > 2_000_000 {
            break;
        }
        let raw = entry.path()?.into_owned();
        let Some(rel) = clean_relative(&raw) else {
            continue;
        };
        if rel == Path::new("chant-result/exit_code") {
            let mut text = String::new();
            entry.by_ref().take(32).read_to_string(&mut text)?;
            code = text.trim().parse::<i32>().ok();
            continue;
        }
        let Ok(inner) = rel.strip_prefix("workspace") else {
            continue;
        };
        if inner.as_os_str().is_empty() || links.iter().any(|l| inner.starts_with(l)) {
            continue;
        }
        let dest = workspace.join(inner);
        if let Some(parent) = dest.parent() {
            ensure_real_dirs(workspace, parent)?;
        }
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            ensure_real_dirs(workspace, &dest)?;
        } else if kind.is_symlink() {
            if let Some(target) = entry.link_name()? {
                std::os::unix::fs::symlink(target.as_ref(), &dest)?;
                links.push(inner.to_path_buf());
            }
        } else if kind.is_file() {
            let mode = entry.header().mode().unwrap_or(0o644);
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags_nofollow()
                .open(&dest)?;
            // Over the limit: keep one byte more than allowed so the policy check refuses it.
            std::io::copy(&mut entry.by_ref().take(max_file + 1), &mut out)?;
            std::fs::set_permissions(
                &dest,
                std::fs::Permissions::from_mode(if mode & 0o100 != 0 { 0o755 } else { 0o644 }),
            )?;
        } else {
            // Devices, FIFOs, hard links: left as a FIFO so the policy check reports them.
            let c = std::ffi::CString::new(dest.as_os_str().as_encoded_bytes())
                .map_err(std::io::Error::other)?;
            // SAFETY: c is a valid NUL-terminated path.
            unsafe {
                libc::mkfifo(c.as_ptr(), 0o600);
            }
        }
    }
    Ok(code)
}

/// `path` without `.`/`..`/root components; None when it tries to leave.
fn clean_relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// Creates `dir` below `root`, refusing to pass through anything that is not a directory.
fn ensure_real_dirs(root: &Path, dir: &Path) -> std::io::Result<()> {
    let rel = dir.strip_prefix(root).map_err(std::io::Error::other)?;
    let mut at = root.to_path_buf();
    for part in rel.components() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(std::io::Error::other(format!(
                    "{} is not a directory",
                    at.display()
                )))
            }
            Err(_) => std::fs::create_dir(&at)?,
        }
    }
    Ok(())
}

trait NoFollow {
    fn custom_flags_nofollow(&mut self) -> &mut Self;
}

impl NoFollow for std::fs::OpenOptions {
    fn custom_flags_nofollow(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NOFOLLOW)
    }
}

/// Adds an image (a directory or a `.tar`) to the initramfs.
fn add_image(cpio: &mut Cpio, image: &Path) -> Result<(), SandboxError> {
    if image.is_dir() {
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            for entry in std::fs::read_dir(image.join(&rel))? {
                let entry = entry?;
                let r = rel.join(entry.file_name());
                let name = r.to_string_lossy().into_owned();
                let meta = std::fs::symlink_metadata(entry.path())?;
                if meta.is_dir() {
                    cpio.dir(&name, 0o755)?;
                    stack.push(r);
                } else if meta.file_type().is_symlink() {
                    let target = std::fs::read_link(entry.path())?;
                    cpio.symlink(&name, &target.to_string_lossy())?;
                } else if meta.is_file() {
                    cpio.file(
                        &name,
                        &std::fs::read(entry.path())?,
                        meta.permissions().mode() & 0o7777,
                    )?;
                }
            }
        }
        return Ok(());
    }
    let mut archive = tar::Archive::new(std::fs::File::open(image)?);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let Some(rel) = clean_relative(&entry.path()?) else {
            continue;
        };
        let name = rel.to_string_lossy().into_owned();
        if name.is_empty() {
            continue;
        }
        let mode = entry.header().mode().unwrap_or(0o644);
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            cpio.dir(&name, mode)?;
        } else if kind.is_symlink() {
            if let Some(t) = entry.link_name()? {
                cpio.symlink(&name, &t.to_string_lossy())?;
            }
        } else if kind.is_file() {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            cpio.file(&name, &bytes, mode)?;
        }
    }
    Ok(())
}

/// A minimal writer of the `newc` cpio format the kernel unpacks as initramfs.
/// Compressed with gzip (fast level): busybox and the modules shrink to a third, which the
/// guest then has less to read before it starts.
struct Cpio {
    out: flate2::write::GzEncoder<std::io::BufWriter<std::fs::File>>,
    ino: u32,
}

impl Cpio {
    fn create(path: &Path) -> std::io::Result<Cpio> {
        Ok(Cpio {
            out: flate2::write::GzEncoder::new(
                std::io::BufWriter::new(std::fs::File::create(path)?),
                flate2::Compression::fast(),
            ),
            ino: 1,
        })
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) -> std::io::Result<()> {
        let name = name.trim_start_matches('/');
        self.ino += 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&[0])?;
        pad(&mut self.out, 110 + name.len() + 1)?;
        self.out.write_all(data)?;
        pad(&mut self.out, data.len())
    }

    fn dir(&mut self, name: &str, perm: u32) -> std::io::Result<()> {
        self.entry(name, 0o040000 | (perm & 0o7777), &[])
    }

    fn file(&mut self, name: &str, data: &[u8], perm: u32) -> std::io::Result<()> {
        self.entry(name, 0o100000 | (perm & 0o7777), data)
    }

    fn symlink(&mut self, name: &str, target: &str) -> std::io::Result<()> {
        self.entry(name, 0o120777, target.as_bytes())
    }

    fn finish(mut self) -> std::io::Result<()> {
        self.entry("TRAILER!!!", 0, &[])?;
        self.out.finish()?.flush()
    }
}

fn pad(out: &mut impl Write, len: usize) -> std::io::Result<()> {
    let rem = (4 - len % 4) % 4;
    out.write_all(&[0u8; 3][..rem])
}
