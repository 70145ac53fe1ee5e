//! Level `vm`: a throwaway qemu virtual machine per run; the hypervisor enforces.
//!
//! Every run boots the configured kernel (qemu machine `pc`) from a fresh initramfs that
//! chant builds (busybox, the virtio modules, the agent image, chant's own `/init` and the
//! job), so nothing a run writes survives into the next (`snapshot: clean`). The clone goes in as a tar archive on
//! a read-only virtio disk; the guest unpacks it into a tmpfs `/workspace`, runs the agent as
//! uid 1000 with the filtered environment, and writes the result as a tar archive to a
//! second, raw disk. Chant reads that archive in userspace as untrusted data — it never
//! mounts anything the guest wrote — and puts its files back into the clone for the usual
//! policy check. No host path is visible inside.
//!
//! The guest's one NIC is qemu's user-mode network with `restrict=on`: it reaches nothing
//! but qemu's forwards at 10.0.2.100, the command gate's (`gate`, every run) and, with
//! `network: allowlist`, the one to chant's egress proxy. Without either (the probe boots)
//! there is no NIC at all.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

mod gate;
mod initramfs;
mod seed;
mod transfer;

use initramfs::{add_image, Cpio};
use transfer::{pack_workspace, unpack_result};

use super::{
    process, Check, Checkup, Egress, GuestView, Job, Outcome, OutputSink, Sandbox, SandboxError,
    Stream,
};
use crate::config::{AgentConfig, SandboxLevel, VmAccel, VmConfig, VmNetwork, VmProvider};

/// The agent's uid and gid inside the guest, whatever the image's `/etc/passwd` says.
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
    // The NIC, loaded only when the network is enabled.
    "net/core/failover",
    "drivers/net/net_failover",
    "drivers/net/virtio_net",
];
/// The guest's address, and where qemu forwards the guest's connections to the relay.
const GUEST_ADDRESS: &str = "10.0.2.15/24";
const PROXY_ADDRESS: &str = "10.0.2.100";
/// The agent's HOME in the guest (a tmpfs, started with the run's HOME files).
const GUEST_HOME: &str = "/home/agent";
/// Where the job's own files (the prompt) are in the guest.
const FILES_DIR: &str = "/run/chant";

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
        match (agent.network.enabled, config.network) {
            (true, VmNetwork::Isolated) => return Err(SandboxError::VmConfig(
                "agent.network.enabled is true but agent.vm.network is 'isolated' (no way out but the command gate); set agent.vm.network: allowlist to give the guest chant's egress proxy, or agent.network.enabled: false".into(),
            )),
            (false, VmNetwork::Allowlist) => return Err(SandboxError::VmConfig(
                "agent.vm.network is 'allowlist' but agent.network.enabled is false; set agent.network.enabled: true and list agent.network.allowed_hosts, or agent.vm.network: isolated".into(),
            )),
            _ => {}
        }
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
        network: Option<&Egress>,
        gate_socket: Option<&Path>,
    ) -> Result<Vec<String>, SandboxError> {
        let mut argv: Vec<String> = vec![
            self.qemu.display().to_string(),
            "-machine".into(),
            // `pc`, not `microvm`: under TCG on a loaded host the microvm guest's TSC
            // calibration fails and its clock never ticks; `pc` has the PIT and HPET.
            format!("pc,accel={accel}"),
            // The newest CPU the accelerator offers: qemu's default model (`qemu64`) lacks
            // SSE4/AVX, and agent CLIs built on Bun or recent Node die on their first
            // instruction with SIGILL (checked: Claude Code 2.1 exits 132 under `qemu64`).
            "-cpu".into(),
            if accel == "kvm" { "host" } else { "max" }.into(),
            "-m".into(),
            format!("{}M", (self.config.memory.bytes() >> 20).max(64)),
            "-smp".into(),
            self.config.cpu.to_string(),
            "-no-user-config".into(),
            "-nographic".into(),
            "-no-reboot".into(),
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
        // User-mode networking with `restrict=on`: the guest reaches nothing, neither the
        // host nor beyond, but the forwards qemu hands to chant (a process per connection,
        // talking to a Unix socket of the run). qemu splits each command with shell quoting
        // rules but runs no shell.
        let mut forwards = Vec::new();
        if let Some(egress) = network {
            let exe = std::env::current_exe()?;
            let relay = format!(
                "{} relay --socket {}",
                crate::exec::shell::quote(&exe.to_string_lossy()),
                crate::exec::shell::quote(&egress.socket.to_string_lossy()),
            );
            forwards.push(format!(
                "tcp:{PROXY_ADDRESS}:{}-cmd:{}",
                crate::net::RELAY_PORT,
                relay.replace(',', ",,")
            ));
        }
        if let Some(socket) = gate_socket {
            forwards.push(gate::forward(socket)?);
        }
        if forwards.is_empty() {
            argv.extend(["-nic".into(), "none".into()]);
        } else {
            let mut netdev = "user,id=n0,restrict=on".to_string();
            for forward in forwards {
                netdev.push_str(",guestfwd=");
                netdev.push_str(&forward);
            }
            argv.extend([
                "-netdev".into(),
                netdev,
                "-device".into(),
                "virtio-net-pci,netdev=n0".into(),
            ]);
        }
        Ok(argv)
    }

    /// The initramfs for one run: the image first, then what chant needs (written after
    /// it, so an image's own `/bin/busybox` or `/init` cannot replace chant's): the
    /// directories the image lacks (never over an image's `bin -> usr/bin` link), busybox,
    /// the modules, `/init` and the job. The image's `/etc/passwd` and `/etc/group` are
    /// kept; `/init` adds chant's account (uid:gid [`AGENT_ID`]) at boot.
    fn initramfs(&self, path: &Path, job: Option<&Job>) -> Result<(), SandboxError> {
        let mut cpio = Cpio::create(path)?;
        let provided = match &self.config.image {
            Some(image) => add_image(&mut cpio, image)?,
            None => std::collections::HashSet::new(),
        };
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
            if dir == "chant" || !provided.contains(dir) {
                cpio.dir(dir, if dir == "chant" { 0o700 } else { 0o755 })?;
            }
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
        // `$CHANT_EXEC`: the gate's client where the run has a gate (always, from `work`).
        let exec = match job.and_then(|j| j.gate.as_ref()) {
            Some(_) => gate::client_script("/bin/busybox", gate::GATE_ADDRESS, gate::GATE_PORT),
            None => gate::STUB.to_string(),
        };
        cpio.file("bin/chant-exec", exec.as_bytes(), 0o755)?;
        cpio.file("init", INIT.as_bytes(), 0o755)?;
        if let Some(job) = job {
            // The prompt where it is; the run's HOME files to be copied into the HOME.
            for entry in seed::entries(&job.files, Path::new(GUEST_HOME), Path::new(FILES_DIR))? {
                match entry {
                    seed::Entry::Dir(d) => cpio.dir(&d, 0o755)?,
                    seed::Entry::File(f, bytes) => cpio.file(&f, bytes, 0o644)?,
                }
            }
            cpio.file("chant/job.sh", job_script(job).as_bytes(), 0o700)?;
            if job.network.is_some() || job.gate.is_some() {
                cpio.file("chant/net", format!("{GUEST_ADDRESS}\n").as_bytes(), 0o600)?;
            }
        }
        cpio.finish()?;
        Ok(())
    }
}

impl Sandbox for Vm {
    fn cuts_network(&self) -> bool {
        true
    }

    fn level(&self) -> SandboxLevel {
        SandboxLevel::Vm
    }

    /// Through qemu's forward to the run's gate socket (`gate`).
    fn gate_channel(&self) -> bool {
        true
    }

    /// Carried in the initramfs under `/chant/home` (root only), copied into the tmpfs HOME
    /// and given to the agent's account by `/init` before the agent starts (`seed`).
    fn seeds_home(&self) -> bool {
        true
    }

    fn guest(&self) -> Option<GuestView> {
        Some(GuestView {
            workspace: PathBuf::from("/workspace"),
            home: PathBuf::from(GUEST_HOME),
            path: "/usr/local/bin:/usr/bin:/bin".into(),
            files_dir: PathBuf::from(FILES_DIR),
            exec: PathBuf::from("/bin/chant-exec"),
        })
    }

    fn preflight(&self, argv: &[String]) -> Result<(), SandboxError> {
        let program = argv.first().cloned().unwrap_or_default();
        if program.is_empty() {
            return Err(SandboxError::ProgramNotFound { program });
        }
        self.find_program(&program).map(|_| ())
    }

    fn checkup(&self, template: &[String], _root: &Path) -> Checkup {
        let program = template.first().map(String::as_str).unwrap_or_default();
        let found = if program.is_empty() {
            Err(SandboxError::ProgramNotFound {
                program: String::new(),
            })
        } else {
            self.find_program(program)
        };
        match found {
            Ok(target) => Checkup::usable(Check::ok(format!(
                "qemu, a kernel, busybox and the agent program {program} (in agent.vm.image or busybox) found{}",
                target.map(|t| format!(" (→ {t})")).unwrap_or_default()
            ))),
            Err(e) => Checkup::failed(Check::missing(e.to_string())),
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
                job.network.as_ref(),
                job.gate.as_deref(),
            )?,
            env: vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())],
            workspace: tmp.path().to_path_buf(),
            timeout: job.timeout,
            files: Vec::new(),
            hold_stdin: true,
            network: None,
            gate: None,
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
        let report = unpack_result(&output, &job.workspace, self.max_file)?;
        if let Some(error) = report.error {
            return Err(SandboxError::VmImage {
                image: self
                    .config
                    .image
                    .as_ref()
                    .map(|i| i.display().to_string())
                    .unwrap_or_else(|| "(none)".into()),
                detail: error,
            });
        }
        Ok(match report.code {
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
# chant's own tools first (an image's mount, tar or sed may differ or be missing); busybox
# also fills /bin where the image has nothing, for the agent.
/bin/busybox mkdir -p /chant/bb
/bin/busybox --install -s /chant/bb
/bin/busybox --install -s /bin
export PATH=/chant/bb:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
if grep -q chant.probe /proc/cmdline; then echo chant-probe-ok; poweroff -f; fi
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk; do [ -f /lib/modules/$m.ko ] && insmod /lib/modules/$m.ko; done
if [ -f /chant/net ]; then
  for m in failover net_failover virtio_net; do [ -f /lib/modules/$m.ko ] && insmod /lib/modules/$m.ko; done
  ip link set lo up
  ip link set eth0 up
  ip addr add "$(cat /chant/net)" dev eth0
fi
IN=; OUT=
for d in /sys/block/vd*; do
  n=${d##*/}
  if [ "$(cat $d/ro)" = 1 ]; then IN=/dev/$n; else OUT=/dev/$n; fi
done
# The agent's account, by number: the image's own passwd and group stay, and chant adds
# a name no image uses for uid:gid 1000 (any earlier line of that name is dropped).
for f in passwd group; do
  [ -f /etc/$f ] || : > /etc/$f
  sed -i '/^chant-agent:/d' /etc/$f
  [ -z "$(tail -c1 /etc/$f)" ] || echo >> /etc/$f
done
grep -q '^root:' /etc/passwd || echo 'root:x:0:0::/root:/bin/sh' >> /etc/passwd
echo 'chant-agent:x:1000:1000:chant agent:/home/agent:/bin/sh' >> /etc/passwd
echo 'chant-agent:x:1000:' >> /etc/group
mount -t tmpfs -o mode=0755 workspace /workspace
mount -t tmpfs -o mode=1777 tmp /tmp
mount -t tmpfs -o mode=0700 home /home/agent
tar -x -f "$IN" -C /workspace
# The run's HOME files (the agent's settings, hooks, trust state), then all of it the agent's.
if [ -d /chant/home ]; then cp -R /chant/home/. /home/agent/ || echo "chant could not copy the agent's settings into /home/agent" > /chant/error; fi
chown -R 1000:1000 /workspace /home/agent
cd /workspace
# The agent never runs with a HOME chant did not fill.
if [ -f /chant/error ]; then code=125; else /bin/busybox sh /chant/job.sh; code=$?; fi
kill -9 -1 2>/dev/null
mkdir -p /chant-result
echo "$code" > /chant-result/exit_code
[ -f /chant/error ] && cp /chant/error /chant-result/error
cd /
tar -c -f "$OUT" chant-result workspace
sync
poweroff -f
"#;

/// The job as a root-only script: first a check that the image can run a shell as
/// uid:gid [`AGENT_ID`] that may write `/workspace` (else the reason goes to
/// `/chant/error` for the host), then a clean environment and the agent's argv, run by
/// chant's busybox `su` (which keeps the environment with `-p`) as `chant-agent`, the
/// account `/init` made for that number whatever the image's `/etc/passwd` says.
fn job_script(job: &Job) -> String {
    let mut command = String::from("exec");
    for a in &job.argv {
        command.push(' ');
        command.push_str(&crate::exec::shell::quote(a));
    }
    let check = format!(
        "test \"$(/bin/busybox id -u):$(/bin/busybox id -g)\" = {AGENT_ID}:{AGENT_ID} && test -w /workspace"
    );
    let mut s = format!(
        "#!/bin/sh\n\
         if ! /bin/busybox su -p -s /bin/sh chant-agent -c {check} 2>/chant/why; then\n\
         \x20 {{ echo \"the image cannot run a shell as uid:gid {AGENT_ID}:{AGENT_ID} that may write /workspace (its /bin/sh is used):\"; /bin/busybox head -c 1000 /chant/why; }} > /chant/error\n\
         \x20 exit 125\n\
         fi\n\
         exec /bin/busybox env -i",
        check = crate::exec::shell::quote(&check)
    );
    let proxy = job.network.as_ref().map(|_| {
        crate::net::proxy_env(&format!(
            "http://{PROXY_ADDRESS}:{}",
            crate::net::RELAY_PORT
        ))
    });
    for (k, v) in job.env.iter().chain(proxy.iter().flatten()) {
        s.push(' ');
        s.push_str(&crate::exec::shell::quote(&format!("{k}={v}")));
    }
    s.push_str(" /bin/busybox su -p -s /bin/sh chant-agent -c ");
    s.push_str(&crate::exec::shell::quote(&command));
    s.push('\n');
    s
}

/// What `agent.network` gives the guest under `config` (for `git chant doctor`).
pub fn network_note(config: &VmConfig) -> String {
    match config.network {
        VmNetwork::Allowlist => "agent.vm.network: allowlist".into(),
        VmNetwork::Isolated => {
            "agent.vm.network is isolated: set it to allowlist to use the vm level".into()
        }
    }
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

impl Vm {
    /// Where the agent `program` is: a busybox applet or a file of the image, reached
    /// through links inside the image only (`Some(target)` then); a link to nothing is
    /// said as such.
    fn find_program(&self, program: &str) -> Result<Option<String>, SandboxError> {
        if !program.contains('/') && busybox_has(&self.busybox, program) {
            return Ok(None);
        }
        let not_in_image = || SandboxError::NotInImage {
            program: program.to_string(),
        };
        let image = self.config.image.as_deref().ok_or_else(not_in_image)?;
        image_find(image, program).map_err(|dangling| match dangling {
            Some((link, target)) => SandboxError::DanglingInImage {
                link,
                target,
                image: format!("the vm image {}", image.display()),
            },
            None => not_in_image(),
        })
    }
}

/// `program` in the guest image (a directory or a `.tar`), as the guest's PATH finds it:
/// `Ok(Some(target))` when links led to it; `Err(Some((link, target)))` for a link to
/// nothing (when no other candidate is a file), `Err(None)` when it is not there.
fn image_find(image: &Path, program: &str) -> Result<Option<String>, Option<(String, String)>> {
    use crate::sandbox::image_links::{resolve, DirImage, Lookup, Resolved, TarImage};
    let candidates: Vec<String> = if program.contains('/') {
        vec![format!("/{}", program.trim_start_matches('/'))]
    } else {
        ["/bin", "/usr/bin", "/usr/local/bin"]
            .iter()
            .map(|d| format!("{d}/{program}"))
            .collect()
    };
    let tar;
    let dir;
    let lookup: &dyn Lookup = if image.is_dir() {
        dir = DirImage(image);
        &dir
    } else {
        tar = TarImage::read(image).ok_or(None)?;
        &tar
    };
    let mut dangling = None;
    for candidate in candidates {
        match resolve(lookup, &candidate) {
            Resolved::File {
                path,
                through_links,
            } => return Ok(through_links.then_some(path)),
            Resolved::Missing {
                dangling_target: Some(target),
            } => {
                dangling.get_or_insert((candidate, target));
            }
            Resolved::Loop => {
                dangling.get_or_insert((candidate, "a loop of links".to_string()));
            }
            Resolved::Missing { .. } => {}
        }
    }
    Err(dangling)
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
            None,
            None,
        )?,
        env: vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())],
        workspace: tmp.path().to_path_buf(),
        timeout,
        files: Vec::new(),
        hold_stdin: true,
        network: None,
        gate: None,
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

/// Passes the guest console on, line by line, without the kernel's own messages and without
/// terminal control sequences: the firmware resets and clears the console (`ESC c`,
/// `ESC [?7l`, `ESC [2J`) on the line the agent's first output lands on, which broke the
/// first JSON event of an agent's stream, and what the guest writes must not drive the
/// user's terminal anyway.
struct Console<'s> {
    inner: &'s mut dyn OutputSink,
    line: Vec<u8>,
}

impl Console<'_> {
    fn emit(&mut self) {
        let line = strip_controls(&std::mem::take(&mut self.line));
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

/// `line` without escape sequences: `ESC` followed by a CSI sequence (`[`, parameters, one
/// final byte), an OSC string (`]` … BEL or `ESC \\`), or one more byte (`ESC c`, …).
fn strip_controls(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        if line[i] != 0x1b {
            out.push(line[i]);
            i += 1;
            continue;
        }
        i += 1;
        match line.get(i) {
            Some(b'[') => {
                i += 1;
                while i < line.len() && !(0x40..=0x7e).contains(&line[i]) {
                    i += 1;
                }
                i += 1;
            }
            Some(b']') => {
                while i < line.len() && line[i] != 0x07 && line[i] != b'\n' {
                    if line[i] == 0x1b && line.get(i + 1) == Some(&b'\\') {
                        i += 1;
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            Some(_) => i += 1,
            None => {}
        }
    }
    if line.ends_with(b"\n") && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out
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

#[cfg(test)]
mod console_tests {
    use super::*;

    #[derive(Default)]
    struct Seen(Vec<u8>);

    impl OutputSink for Seen {
        fn output(&mut self, _stream: Stream, bytes: &[u8]) {
            self.0.extend_from_slice(bytes);
        }
    }

    fn through_console(bytes: &[u8]) -> String {
        let mut seen = Seen::default();
        let mut console = Console {
            inner: &mut seen,
            line: Vec::new(),
        };
        console.output(Stream::Stdout, bytes);
        console.flush();
        String::from_utf8_lossy(&seen.0).into_owned()
    }

    #[test]
    fn the_firmwares_console_reset_never_reaches_the_agents_first_line() {
        assert_eq!(
            through_console(b"\x1bc\x1b[?7l\x1b[2J{\"type\":\"system\"}\r\n"),
            "{\"type\":\"system\"}\n"
        );
    }

    #[test]
    fn escape_sequences_from_the_guest_are_dropped_and_text_kept() {
        assert_eq!(
            through_console(b"\x1b[0;31mred\x1b[0m \x1b]0;title\x07done\n"),
            "red done\n"
        );
        assert_eq!(through_console(b"a\x1b]2;t\x1b\\b\n\x1b[2K\x1b"), "ab\n");
        assert_eq!(through_console(b"[    1.234] kernel\nplain\n"), "plain\n");
    }
}

#[cfg(test)]
mod image_find_tests {
    use super::*;

    #[test]
    fn the_program_is_found_through_links_inside_a_directory_or_tar_image_never_the_hosts() {
        use std::os::unix::fs::symlink;
        let root = tempfile::tempdir().expect("tempdir");
        let r = root.path();
        for d in ["usr/bin", "usr/lib/node_modules/cli/bin", "opt"] {
            std::fs::create_dir_all(r.join(d)).expect("mkdir");
        }
        std::fs::write(r.join("usr/lib/node_modules/cli/bin/cli.js"), "x").expect("write");
        symlink("/opt/claude", r.join("usr/bin/claude")).expect("link");
        symlink(
            "../usr/lib/node_modules/cli/bin/cli.js",
            r.join("opt/claude"),
        )
        .expect("link");
        symlink("/usr/lib/node_modules/gone.js", r.join("usr/bin/codex")).expect("link");
        // On the host, not in the image.
        symlink("/bin/sh", r.join("usr/bin/sh-on-host")).expect("link");
        let tars = tempfile::tempdir().expect("tempdir");
        let tar_path = tars.path().join("image.tar");
        let mut builder = tar::Builder::new(std::fs::File::create(&tar_path).expect("tar"));
        builder.follow_symlinks(false);
        builder.append_dir_all(".", r).expect("append");
        builder.finish().expect("finish");
        drop(builder);
        for image in [r, tar_path.as_path()] {
            let target = "/usr/lib/node_modules/cli/bin/cli.js".to_string();
            assert_eq!(image_find(image, "claude"), Ok(Some(target.clone())));
            assert_eq!(image_find(image, "/usr/bin/claude"), Ok(Some(target)));
            assert_eq!(
                image_find(image, "codex"),
                Err(Some((
                    "/usr/bin/codex".to_string(),
                    "/usr/lib/node_modules/gone.js".to_string()
                )))
            );
            assert_eq!(
                image_find(image, "sh-on-host"),
                Err(Some(("/usr/bin/sh-on-host".into(), "/bin/sh".into())))
            );
            assert_eq!(image_find(image, "nothing"), Err(None));
        }
    }
}
