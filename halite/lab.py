"""The lab: real hosts on one machine, as systemd-nspawn containers.

``halite lab up`` builds (once, then cached) a base image and a local package
mirror per Debian release the topology names (``os_release``: bookworm or
trixie), then boots one container per host of the topology, from its
release's image with its release's mirror, on two bridges it creates. The
control machine has an address on the edge bridge only; it reaches every
other host through the jump host, exactly as it would reach hosts in a
private cloud network.

Everything the lab makes is recorded in ``/var/lib/halite/lab/state.json`` so
``halite lab down`` removes it all again: containers (stopped by their PID),
overlay mounts, bridges and the unreachable route.
"""
from __future__ import annotations

import json
import os
import shutil
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from halite import config, model, platforms, view

ROOT = Path(os.environ.get("HALITE_LAB_ROOT", "/var/lib/halite"))
#: Debian releases the lab can boot (each its own image and mirror).
RELEASES = tuple(platforms.DEBIAN_RELEASES)
LAB_DIR = ROOT / "lab"
SSH_DIR = LAB_DIR / "ssh"
KEY = SSH_DIR / "id_ed25519"
KNOWN_HOSTS = SSH_DIR / "known_hosts"
STATE = LAB_DIR / "state.json"
MIRROR_MOUNT = model.LAB_MIRROR
DEBIAN_URL = "http://deb.debian.org/debian"

#: What the base image holds: enough to boot systemd and be managed over SSH.
IMAGE_PACKAGES = [
    "systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "iproute2",
    "ca-certificates", "procps", "less", "netbase",
    # what a provider's Debian image has and halite must live with: sudo for the named
    # login user, automatic updates switched on
    "sudo", "unattended-upgrades",
]

#: Debian packages the states may install on lab hosts, served by the mirror;
#: ``{pg}`` is the release's PostgreSQL major.
MIRROR_DEBS_TEMPLATE = [
    "chrony", "nftables", "postgresql-{pg}", "postgresql-client-{pg}", "etcd-server", "etcd-client",
    "haproxy", "pgbouncer", "python3-venv", "python3-pip", "libpq5", "curl", "rsync", "sudo",
    "nginx", "openssl", "pgbackrest",
    "prometheus", "prometheus-alertmanager", "prometheus-node-exporter", "prometheus-postgres-exporter",
    "prometheus-pgbouncer-exporter",
]

#: PyPI packages for hosts (built as wheels on the control machine).
MIRROR_WHEELS = ["patroni[etcd3]==4.1.*", "psycopg[binary]>=3.2,<3.4", "psycopg-pool>=3.2,<3.4",
                 "flask>=3.1,<3.2", "gunicorn>=23,<24"]
#: Platform tags of manylinux wheels a Debian host on x86_64 can load (glibc 2.36+).
WHEEL_PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                   "manylinux_2_12_x86_64", "manylinux2010_x86_64", "manylinux_2_5_x86_64",
                   "manylinux1_x86_64", "any"]


def image_dir(release: str) -> Path:
    """The cached base image of a Debian release."""
    return ROOT / "images" / release


def mirror_dir(release: str) -> Path:
    """The cached package mirror of a Debian release (bookworm's kept its first name)."""
    return ROOT / "mirror" if release == "bookworm" else ROOT / f"mirror-{release}"


def mirror_debs(release: str) -> list[str]:
    """The Debian packages of a release's mirror."""
    pg = platforms.DEBIAN_RELEASES[release]["postgresql"]
    return [name.replace("{pg}", str(pg)) for name in MIRROR_DEBS_TEMPLATE]


def apt_sources(release: str) -> str:
    """sources.list lines for fetching a release's packages on the control machine."""
    return (f"deb {DEBIAN_URL} {release} main\ndeb {DEBIAN_URL} {release}-updates main\n"
            f"deb http://deb.debian.org/debian-security {release}-security main\n")


def host_release(topo: dict, host: str) -> str:
    """The Debian release ``host`` boots in the lab (the topology's ``os_release``)."""
    spec = topo["hosts"][host]
    family = spec.get("os_family", "Debian")
    if family != "Debian":
        raise RuntimeError(f"{host}: the lab boots Debian hosts only; the topology says {family}")
    release = platforms.release_of(family, spec.get("os_release"))
    if release not in RELEASES:
        raise RuntimeError(f"{host}: the lab has no image for Debian release {release!r}; known: {', '.join(RELEASES)}")
    return release


def topology_releases(topo: dict, hosts: list[str] | None = None) -> list[str]:
    """The Debian releases ``hosts`` (default: all) boot, each once, in topology order."""
    out: list[str] = []
    for host in hosts or list(topo["hosts"]):
        release = host_release(topo, host)
        if release not in out:
            out.append(release)
    return out


#: Kept for callers of the single-release lab: bookworm's image, mirror and packages.
IMAGE_DIR = image_dir("bookworm")
MIRROR_DIR = mirror_dir("bookworm")
MIRROR_DEBS = mirror_debs("bookworm")


def log(msg: str) -> None:
    print(f"[lab {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list[str], check: bool = True, quiet: bool = False, **kw) -> subprocess.CompletedProcess:
    if not quiet:
        log("$ " + " ".join(str(c) for c in cmd))
    res = subprocess.run([str(c) for c in cmd], text=True, capture_output=True, **kw)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({res.returncode}): {res.stderr.strip() or res.stdout.strip()}")
    return res


# --------------------------------------------------------------------------
# image and mirror


def build_image(release: str = "bookworm") -> Path:
    """Debootstrap the base image of a Debian release once; later calls reuse it."""
    image = image_dir(release)
    marker = image / ".halite-image-ok"
    wanted = json.dumps(IMAGE_PACKAGES)
    if marker.exists() and marker.read_text() == wanted:
        log(f"{release} base image cached at {image}")
        return image
    if marker.exists():
        log(f"the {release} base image lacks packages the lab now needs: building it again")
    if image.exists():
        shutil.rmtree(image)
    image.parent.mkdir(parents=True, exist_ok=True)
    log(f"building the {release} base image with debootstrap (about 3-4 minutes, once)")
    tmp = image.with_suffix(".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    run(["debootstrap", "--variant=minbase", "--include=" + ",".join(IMAGE_PACKAGES), release, tmp, DEBIAN_URL])
    # Lab hosts have no route out: their package sources come from pillar.
    (tmp / "etc/apt/sources.list").write_text("# package sources are managed by Salt (pillar halite:packages)\n")
    for key in (tmp / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # generated per host by the lab
    (tmp / "etc/machine-id").write_text("")
    wants = tmp / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "systemd-networkd.service"
    if not link.exists():
        link.symlink_to("/lib/systemd/system/systemd-networkd.service")
    run(["chroot", tmp, "apt-get", "clean"])
    tmp.rename(image)
    marker.write_text(wanted)
    return image


def build_mirror(release: str = "bookworm", wheels_python: str | None = None) -> Path:
    """Fetch a release's host packages into a local repository, once."""
    mirror, image = mirror_dir(release), image_dir(release)
    debs = mirror_debs(release)
    deb_dir = mirror / "debian"
    pypi_dir = mirror / "pypi"
    marker = mirror / ".halite-mirror-ok"
    wanted = json.dumps([debs, MIRROR_WHEELS])
    if marker.exists() and marker.read_text() == wanted:
        log(f"{release} package mirror cached at {mirror}")
        return mirror
    build_image(release)
    log(f"building the {release} package mirror from Debian's registry and PyPI")
    deb_dir.mkdir(parents=True, exist_ok=True)
    pypi_dir.mkdir(parents=True, exist_ok=True)
    # A scratch copy of apt's state inside the image, so the image stays clean.
    work = mirror.with_name(mirror.name + "-work")
    shutil.rmtree(work, ignore_errors=True)
    (work / "lists/partial").mkdir(parents=True)
    (work / "archives/partial").mkdir(parents=True)
    sources = work / "sources.list"
    sources.write_text(apt_sources(release))
    apt_opts = [
        "-o", f"Dir={image}",
        "-o", f"Dir::Etc::SourceList={sources}",
        "-o", "Dir::Etc::SourceParts=/nonexistent",
        "-o", f"Dir::State::Lists={work}/lists",
        "-o", f"Dir::Cache::Archives={work}/archives",
        "-o", "Dir::Etc::Trusted=/etc/apt/trusted.gpg",
        "-o", "Dir::Etc::TrustedParts=/etc/apt/trusted.gpg.d",
        "-o", "APT::Sandbox::User=root",
        "-o", "Debug::NoLocking=1",
    ]
    run(["apt-get", *apt_opts, "update"])
    run(["apt-get", *apt_opts, "-y", "--download-only", "install", *debs])
    for deb in (work / "archives").glob("*.deb"):
        shutil.move(str(deb), deb_dir / deb.name)
    shutil.rmtree(work, ignore_errors=True)
    with open(deb_dir / "Packages", "w") as fh:
        subprocess.run(["dpkg-scanpackages", "--multiversion", ".", "/dev/null"], cwd=deb_dir, stdout=fh,
                       stderr=subprocess.DEVNULL, check=True)
    run(["gzip", "-kf", deb_dir / "Packages"], quiet=True)
    release_file = run(["apt-ftparchive", "release", "."], cwd=deb_dir, quiet=True).stdout
    (deb_dir / "Release").write_text(release_file)
    py = wheels_python or sys.executable
    # Pure-Python wheels (and sdists such as ydiff, built here) serve any Python 3 ...
    run([py, "-m", "pip", "wheel", "--quiet", "-w", pypi_dir, *MIRROR_WHEELS])
    target = platforms.DEBIAN_RELEASES[release]["python"]
    have = run([py, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], quiet=True).stdout.strip()
    if have != target:
        # ... compiled ones (psycopg-binary, PyYAML, MarkupSafe) must match the hosts' Python.
        run([py, "-m", "pip", "download", *wheel_download_args(target), "--find-links", pypi_dir,
             "-d", pypi_dir, *MIRROR_WHEELS])
    marker.write_text(wanted)
    log(f"{release} mirror ready: {len(list(deb_dir.glob('*.deb')))} debs, "
        f"{len(list(pypi_dir.glob('*.whl')))} wheels")
    return mirror


#: The lab mirror's signing key, made once on this machine and kept with the mirrors: the lab's
#: hosts trust the mirror the way a real site trusts a signed repository (its public key named in
#: pillar/lab.yaml's packages.apt_keys, laid down by base.packages, signed-by in the source line).
MIRROR_KEY_DIR = ROOT / "mirror-key"
MIRROR_KEY = MIRROR_KEY_DIR / "halite-lab-mirror.asc"


def _gpg(*args, **kw) -> subprocess.CompletedProcess:
    home = MIRROR_KEY_DIR / "gnupg"
    home.mkdir(parents=True, mode=0o700, exist_ok=True)
    try:
        return run(["gpg", "--homedir", home, "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", "",
                    *args], quiet=True, **kw)
    finally:
        # gpg starts an agent for its home; stop that one (by its home's socket), no other
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True)


def mirror_key() -> Path:
    """The armored public key the lab's mirror is signed with (made on first use)."""
    if not MIRROR_KEY.exists():
        log("making the lab mirror's signing key (OpenPGP ed25519, once)")
        _gpg("--quick-gen-key", "halite lab mirror <mirror@halite.lab>", "ed25519", "sign", "never")
        tmp = MIRROR_KEY.with_suffix(".tmp")
        tmp.write_text(_gpg("--armor", "--export").stdout)
        tmp.rename(MIRROR_KEY)
    return MIRROR_KEY


def sign_mirror(release: str) -> None:
    """Sign a release's mirror (``InRelease``) unless it is signed already, after its last change."""
    deb_dir = mirror_dir(release) / "debian"
    key, signed = mirror_key(), deb_dir / "InRelease"
    if signed.exists() and signed.stat().st_mtime >= max((deb_dir / "Release").stat().st_mtime, key.stat().st_mtime):
        return
    log(f"signing the {release} mirror (InRelease)")
    _gpg("--clearsign", "-o", signed, deb_dir / "Release")


def wheel_download_args(python: str) -> list[str]:
    """pip download options for binary wheels that CPython ``python`` (e.g. 3.13) on x86_64 loads."""
    tag = "cp" + python.replace(".", "")
    args = ["--quiet", "--only-binary=:all:", "--python-version", python, "--implementation", "cp",
            "--abi", tag, "--abi", "abi3", "--abi", "none"]
    for plat in WHEEL_PLATFORMS:
        args += ["--platform", plat]
    return args


# --------------------------------------------------------------------------
# state


def load_state() -> dict:
    if STATE.exists():
        return json.loads(STATE.read_text())
    return {"hosts": {}, "bridges": [], "routes": [], "addresses": []}


def save_state(state: dict) -> None:
    LAB_DIR.mkdir(parents=True, exist_ok=True)
    STATE.write_text(json.dumps(state, indent=2, sort_keys=True))


def alive(pid: int | None) -> bool:
    """Whether ``pid`` runs. A child of ours that has exited is reaped first:
    a zombie still answers ``kill(pid, 0)`` (the failover bench starts the
    containers it powers on, so their nspawn processes are its children)."""
    if not pid:
        return False
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def leader_pid(host: str, state: dict | None = None) -> int:
    """The PID of the container's init (systemd), child of its nspawn process."""
    state = state or load_state()
    pid = state["hosts"].get(host, {}).get("pid")
    if not alive(pid):
        raise RuntimeError(f"{host} is not running")
    for _ in range(100):
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except FileNotFoundError:
            children = []
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise RuntimeError(f"{host}: nspawn {pid} has no child")


# --------------------------------------------------------------------------
# network


def _link_exists(name: str) -> bool:
    return run(["ip", "link", "show", name], check=False, quiet=True).returncode == 0


def net_up(topo: dict, state: dict) -> None:
    for name, net in topo["networks"].items():
        bridge = net["bridge"]
        if not _link_exists(bridge):
            run(["ip", "link", "add", bridge, "type", "bridge"])
        if bridge not in state["bridges"]:
            state["bridges"].append(bridge)
        run(["ip", "link", "set", bridge, "up"], quiet=True)
        ctl = net.get("control_address")
        if ctl:
            prefix = net["cidr"].split("/")[1]
            addr = f"{ctl}/{prefix}"
            have = run(["ip", "-o", "addr", "show", "dev", bridge], quiet=True).stdout
            if f" {addr} " not in have:
                run(["ip", "addr", "add", addr, "dev", bridge])
    lab_range = topo.get("lab_range")
    if lab_range:
        have = run(["ip", "route", "show", "type", "unreachable"], quiet=True).stdout
        if lab_range not in have:
            run(["ip", "route", "add", "unreachable", lab_range])
        if lab_range not in state["routes"]:
            state["routes"].append(lab_range)
    save_state(state)


def net_down(state: dict) -> None:
    for route in state.get("routes", []):
        run(["ip", "route", "del", "unreachable", route], check=False)
    for bridge in state.get("bridges", []):
        if _link_exists(bridge):
            run(["ip", "link", "del", bridge], check=False)
    state["routes"], state["bridges"] = [], []


# --------------------------------------------------------------------------
# hosts


def ensure_keys() -> None:
    SSH_DIR.mkdir(parents=True, exist_ok=True)
    os.chmod(SSH_DIR, 0o700)
    if not KEY.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "halite-lab-control", "-f", KEY])


def host_dirs(host: str) -> dict[str, Path]:
    base = LAB_DIR / "hosts" / host
    return {"base": base, "upper": base / "upper", "work": base / "work", "root": base / "root"}


def _networkd(iface: str, address: str, cidr: str) -> str:
    prefix = cidr.split("/")[1]
    return f"[Match]\nName={iface}\n\n[Network]\nAddress={address}/{prefix}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"


def interfaces(topo: dict, host: str) -> list[tuple[str, str, str]]:
    """(interface inside, network name, address): host0 first, then eth1."""
    addrs = topo["hosts"][host]["addresses"]
    order = [n for n in ("edge", "private") if n in addrs] + [n for n in addrs if n not in ("edge", "private")]
    return [("host0" if i == 0 else f"eth{i}", net, addrs[net]) for i, net in enumerate(order)]


def prepare_host(topo: dict, host: str, state: dict) -> Path:
    d = host_dirs(host)
    release = host_release(topo, host)
    entry = state["hosts"].setdefault(host, {})
    # A host made before releases were recorded is bookworm's.
    if d["upper"].exists() and any(d["upper"].iterdir()) and entry.get("release", "bookworm") != release:
        raise RuntimeError(f"{host} was made from the {entry.get('release', 'bookworm')} image and the topology "
                           f"now says {release}: remove the lab first (halite lab down)")
    for key in ("upper", "work", "root"):
        d[key].mkdir(parents=True, exist_ok=True)
    if not os.path.ismount(d["root"]):
        run(["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={image_dir(release)},upperdir={d['upper']},workdir={d['work']}", d["root"]])
    entry.update({"root": str(d["root"]), "release": release})
    save_state(state)
    root = d["root"]
    (root / "etc/hostname").write_text(host + "\n")
    mid = root / "etc/machine-id"
    if not mid.read_text().strip():
        mid.write_text(os.urandom(16).hex() + "\n")
    netdir = root / "etc/systemd/network"
    netdir.mkdir(parents=True, exist_ok=True)
    for iface, net, addr in interfaces(topo, host):
        (netdir / f"10-{iface}.network").write_text(_networkd(iface, addr, topo["networks"][net]["cidr"]))
    _login(root, view.login_user(topo, host))
    # a provider's image resolves its own name (DNS or cloud-init's /etc/hosts); sudo asks
    hosts = root / "etc/hosts"
    line = f"{config.cluster_address(topo, host)}\t{host}"
    if line not in hosts.read_text().splitlines():
        hosts.write_text(hosts.read_text() + line + "\n")
    hostkey = root / "etc/ssh/ssh_host_ed25519_key"
    if not hostkey.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{host}", "-f", hostkey], quiet=True)
    (root / "etc/ssh/sshd_config.d").mkdir(exist_ok=True)
    lab_conf = root / "etc/ssh/sshd_config.d/00-halite-lab.conf"
    if not lab_conf.exists():
        lab_conf.write_text("HostKey /etc/ssh/ssh_host_ed25519_key\n")
    return root


#: What cloud-init writes in front of root's key when it refuses root (``disable_root``;
#: without its ``sleep 10``), so a root login is refused the way a provider's image refuses it.
CLOUD_DISABLE_ROOT = ('no-port-forwarding,no-agent-forwarding,no-X11-forwarding,command="echo \'Please login '
                      'as the user \\"{user}\\" rather than the user \\"root\\".\';echo;exit 142" ')


def _login(root: Path, user: str) -> None:
    """The lab's key lets the control machine in as ``user``.

    root: root's authorized_keys. Any other user: the host is made like a provider's Debian
    image after cloud-init: ``user`` with passwordless sudo, root's key refused with
    cloud-init's message, cloud-init's sshd drop-in allowing passwords (which halite's
    ``base.ssh`` must override) and unattended upgrades on (``base.upgrades`` turns them off
    on db hosts).
    """
    pub = Path(str(KEY) + ".pub").read_text()
    rootssh = root / "root/.ssh"
    rootssh.mkdir(parents=True, exist_ok=True, mode=0o700)
    if user == "root":
        (rootssh / "authorized_keys").write_text(pub)
        os.chmod(rootssh / "authorized_keys", 0o600)
        return
    (rootssh / "authorized_keys").write_text(CLOUD_DISABLE_ROOT.format(user=user) + pub)
    os.chmod(rootssh / "authorized_keys", 0o600)
    if not any(line.split(":")[0] == user for line in (root / "etc/passwd").read_text().splitlines()):
        run(["chroot", root, "useradd", "--create-home", "--shell", "/bin/bash", user], quiet=True)
    entry = next(line.split(":") for line in (root / "etc/passwd").read_text().splitlines()
                 if line.split(":")[0] == user)
    uid, gid, home = int(entry[2]), int(entry[3]), root / entry[5].lstrip("/")
    sshdir = home / ".ssh"
    sshdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    (sshdir / "authorized_keys").write_text(pub)
    for path in (sshdir, sshdir / "authorized_keys"):
        os.chown(path, uid, gid)
    os.chmod(sshdir / "authorized_keys", 0o600)
    sudoers = root / "etc/sudoers.d/90-cloud-init-users"
    sudoers.write_text(f"# Created by cloud-init (the halite lab's stand-in)\n{user} ALL=(ALL) NOPASSWD:ALL\n")
    os.chmod(sudoers, 0o440)
    (root / "etc/ssh/sshd_config.d").mkdir(exist_ok=True)
    (root / "etc/ssh/sshd_config.d/50-cloud-init.conf").write_text("PasswordAuthentication yes\n")
    (root / "etc/apt/apt.conf.d/20auto-upgrades").write_text(
        'APT::Periodic::Update-Package-Lists "1";\nAPT::Periodic::Unattended-Upgrade "1";\n')


def write_known_hosts(topo: dict) -> None:
    lines = []
    for host, spec in topo["hosts"].items():
        pub = (host_dirs(host)["root"] / "etc/ssh/ssh_host_ed25519_key.pub")
        if not pub.exists():
            pub = host_dirs(host)["upper"] / "etc/ssh/ssh_host_ed25519_key.pub"
        keytype, key = pub.read_text().split()[:2]
        names = ",".join([host, *spec["addresses"].values()])
        lines.append(f"{names} {keytype} {key}")
    KNOWN_HOSTS.write_text("\n".join(lines) + "\n")


def start_host(topo: dict, host: str, state: dict) -> None:
    entry = state["hosts"].setdefault(host, {})
    if alive(entry.get("pid")):
        return
    root = prepare_host(topo, host, state)
    ifaces = interfaces(topo, host)
    cmd = ["systemd-nspawn", "-D", str(root), "--boot", "--register=no", "--keep-unit", "-M", host,
           "--resolv-conf=off", "--timezone=off", "--console=read-only",
           f"--bind-ro={mirror_dir(host_release(topo, host))}:{MIRROR_MOUNT}"]
    extra_links = []
    for i, (iface, net, _addr) in enumerate(ifaces):
        bridge = topo["networks"][net]["bridge"]
        if i == 0:
            cmd.append(f"--network-bridge={bridge}")
        else:
            hostside = f"hx{i}-{host}"[:15]
            cmd.append(f"--network-veth-extra={hostside}:{iface}")
            extra_links.append((hostside, bridge))
    logf = open(host_dirs(host)["base"] / "console.log", "ab")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                            start_new_session=True)
    entry.update({"pid": proc.pid, "started": time.time(), "links": [h for h, _ in extra_links]})
    save_state(state)
    log(f"{host}: systemd-nspawn started (pid {proc.pid})")
    for hostside, bridge in extra_links:
        for _ in range(100):
            if _link_exists(hostside):
                break
            time.sleep(0.1)
        run(["ip", "link", "set", hostside, "master", bridge, "up"])


def ssh_base(topo: dict, host: str) -> list[str]:
    """The ssh command line that reaches ``host`` the way Salt does (as the topology's login
    user; :func:`as_root` runs a command through its sudo)."""
    jump, jump_addr = view.jump_address(topo)
    user, jump_user = view.login_user(topo, host), view.login_user(topo, jump)
    opts = ["ssh", "-i", str(KEY), "-o", f"UserKnownHostsFile={KNOWN_HOSTS}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR"]
    if host == jump:
        return opts + [f"{user}@{jump_addr}"]
    proxy = (f"ProxyCommand=ssh -i {KEY} -o UserKnownHostsFile={KNOWN_HOSTS} -o StrictHostKeyChecking=yes "
             f"-o BatchMode=yes -o ConnectTimeout=5 -W %h:%p {jump_user}@{jump_addr}")
    return opts + ["-o", proxy, f"{user}@{config.cluster_address(topo, host)}"]


def as_root(topo: dict, host: str, command: list[str]) -> list[str]:
    """``command`` for :func:`ssh_base` run as root: as it is when the login user is root, else
    through ``sudo -n`` (the remote shell reads it as ssh would have: the words joined by spaces).
    No command: a root login shell."""
    if view.login_user(topo, host) == "root":
        return command
    if not command:
        return ["sudo", "-i"]
    return ["sudo -n sh -c " + shlex.quote(" ".join(command))]


class SshTimeout(RuntimeError):
    """sshd did not answer on ``pending`` (``{host: ssh's last error}``) in time."""

    def __init__(self, timeout: float, pending: dict):
        super().__init__(f"sshd did not answer within {timeout:.0f}s on: {', '.join(pending)}")
        self.pending = pending


def wait_ssh(topo: dict, hosts: list[str], timeout: float = 120) -> None:
    deadline = time.time() + timeout
    pending = {h: "" for h in hosts}
    while pending and time.time() < deadline:
        for host in list(pending):
            res = subprocess.run(ssh_base(topo, host) + ["true"], capture_output=True, text=True)
            if res.returncode == 0:
                log(f"{host}: sshd answers")
                del pending[host]
            else:
                pending[host] = " ".join(res.stderr.split())[-300:]
        if pending:
            time.sleep(1)
    if pending:
        raise SshTimeout(timeout, pending)


def _boot_report(host: str, state: dict) -> str:
    """What a container that does not answer says about its boot (systemd, sshd, the journal)."""
    try:
        pid = leader_pid(host, state)
    except RuntimeError as exc:
        return str(exc)
    res = subprocess.run(["nsenter", "-t", str(pid), "-a", "sh", "-c",
                          "systemctl is-system-running; systemctl --failed --no-legend; "
                          "systemctl status ssh --no-pager -n 5; journalctl -b -n 15 --no-pager"],
                         capture_output=True, text=True, timeout=60)
    return (res.stdout + res.stderr).strip()


def wait_ssh_or_restart(topo: dict, hosts: list[str], state: dict, timeout: float = 120) -> None:
    """:func:`wait_ssh`; a container whose sshd does not answer is reported (its boot, ssh's
    last error) and restarted once, then waited for again. Seen once on a fresh ``lab up``
    right after a ``lab down``: one of seven containers never answered; and once when the
    failover suite powered every db host on again (db-02 never answered in 180 s, and the
    backup tests after it failed for want of it). Used wherever the lab starts containers:
    ``lab up`` and the fault tools' power-on."""
    try:
        wait_ssh(topo, hosts, timeout=timeout)
    except SshTimeout as exc:
        for host, error in exc.pending.items():
            log(f"{host}: sshd did not answer (ssh: {error or 'no error'}); its boot:\n{_boot_report(host, state)}")
            log(f"{host}: restarting its container once")
            stop_host(host, state)
            start_host(topo, host, state)
        wait_ssh(topo, list(exc.pending))


def check_open_file_limit(data: dict) -> None:
    """Refuse settings whose open-file limits the lab's hosts cannot have: a container
    inherits this machine's hard limit, and a service asking for more does not start."""
    import resource

    from halite import view

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        return
    need = {"haproxy (haproxy.maxconn)": view.haproxy_backends(data)["nofile"],
            "pgbouncer (pgbouncer.max_client_conn)": view.pgbouncer_nofile(data)}
    over = {k: v for k, v in need.items() if v > hard}
    if over:
        raise RuntimeError(
            "this machine's hard open-file limit is " + str(hard) + " and the lab's hosts inherit it; "
            + ", ".join(f"{k} would need {v}" for k, v in over.items())
            + ": lower those settings in pillar/lab.yaml (nothing was started)")


def up(hosts: list[str] | None = None) -> dict:
    data = config.load()
    topo = data["topology"]
    check_open_file_limit(data)
    state = load_state()
    for host, entry in state["hosts"].items():
        if entry.get("pid") and not alive(entry["pid"]):
            entry["pid"] = None
    targets = hosts or list(topo["hosts"])
    jump = config.hosts_with_role(topo, "jump")[0]
    if jump not in targets:
        targets.insert(0, jump)
    for release in topology_releases(topo, targets):
        build_image(release)
        build_mirror(release)
        sign_mirror(release)
    ensure_keys()
    net_up(topo, state)
    for host in targets:
        prepare_host(topo, host, state)
    write_known_hosts(topo)
    for host in targets:
        start_host(topo, host, state)
    wait_ssh_or_restart(topo, [jump] + [h for h in targets if h != jump], state)
    # First contact as on real hosts: salt-ssh trusts the keys `halite hosts trust` records
    # (scanned from here and on the jump host), not the lab's own record of the keys it made.
    # Nobody compares fingerprints here: the lab made these hosts a moment ago.
    from halite import hosts as first_contact

    log("recording the hosts' keys for salt-ssh (halite hosts trust --yes)")
    first_contact.trust(topo, confirm=lambda _question: True)
    return state


def stop_host(host: str, state: dict, timeout: float = 30) -> None:
    entry = state["hosts"].get(host, {})
    pid = entry.get("pid")
    if alive(pid):
        log(f"{host}: stopping (pid {pid})")
        os.kill(pid, signal.SIGTERM)  # nspawn turns this into a clean poweroff of the container
        deadline = time.time() + timeout
        while alive(pid) and time.time() < deadline:
            _reap(pid)
            time.sleep(0.2)
        if alive(pid):
            log(f"{host}: did not stop within {timeout:.0f}s, killing pid {pid}")
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
            _reap(pid)
    entry["pid"] = None
    save_state(state)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def down() -> None:
    state = load_state()
    for host in list(state["hosts"]):
        stop_host(host, state)
    for host, entry in state["hosts"].items():
        root = entry.get("root")
        if root and os.path.ismount(root):
            run(["umount", root], check=False)
    net_down(state)
    # Anything left from an interrupted run of an older state file.
    try:
        topo = config.load()["topology"]
        for net in topo["networks"].values():
            if _link_exists(net["bridge"]):
                run(["ip", "link", "del", net["bridge"]], check=False)
        if topo.get("lab_range"):
            run(["ip", "route", "del", "unreachable", topo["lab_range"]], check=False, quiet=True)
    except config.ConfigError:
        pass
    if LAB_DIR.exists():
        hosts_dir = LAB_DIR / "hosts"
        if hosts_dir.exists():
            for d in hosts_dir.iterdir():
                if os.path.ismount(d / "root"):
                    run(["umount", d / "root"], check=False)
        shutil.rmtree(LAB_DIR)
    log("lab removed")


def status() -> list[dict]:
    topo = config.load()["topology"]
    state = load_state()
    rows = []
    for host, spec in topo["hosts"].items():
        entry = state["hosts"].get(host, {})
        rows.append({
            "host": host,
            "release": platforms.release_of(spec.get("os_family", "Debian"), spec.get("os_release")),
            "state": "running" if alive(entry.get("pid")) else "stopped",
            "pid": entry.get("pid") if alive(entry.get("pid")) else None,
            "edge": spec["addresses"].get("edge", "-"),
            "private": spec["addresses"].get("private", "-"),
            "roles": ",".join(spec.get("roles") or []),
        })
    return rows


def site_url() -> str:
    """The web site's URL on the edge network (the first app host's): https unless
    ``tls.unsafe_plaintext`` names site (:func:`halite.view.site_url`, its one place);
    clients verify it with :func:`halite.view.site_ca`."""
    from halite import view

    return view.site_url(config.load())


def format_table(rows: list[dict], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def ssh(host: str, command: list[str], check: bool = False, capture: bool = True, timeout: float | None = None):
    topo = config.load()["topology"]
    if host not in topo["hosts"]:
        raise RuntimeError(f"unknown host {host!r}; hosts: {', '.join(topo['hosts'])}")
    cmd = ssh_base(topo, host) + as_root(topo, host, command)
    if not capture:
        return subprocess.run(cmd, check=check, timeout=timeout)
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=timeout)
