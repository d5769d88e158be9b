#!/usr/bin/env bash
# Provisions the teleport-ts AMI on an Amazon Linux 2023 build instance; Packer runs it as root
# (ami/teleport.pkr.hcl). Inputs (environment):
#   NODE_MAJOR  Node.js major version of the nodejs<major> package (22, 24)
#   PACKAGE     the `npm pack` tarball of teleport-ts, uploaded by Packer
#   FILES       the uploaded ami/files directory (this script, system/*.service, 50-teleport.preset, logrotate-teleport)
#   STAGING     the upload directory, removed at the end
# It fails on the first error, naming the step.
set -euo pipefail

step() { printf '\n==> install.sh: %s\n' "$*"; }
fail() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }
trap 'fail "line $LINENO: \"$BASH_COMMAND\" exited with $?"' ERR

[ "$(id -u)" = 0 ] || fail "must run as root (Packer runs it through sudo)"
[[ "${NODE_MAJOR:-}" =~ ^[0-9]+$ ]] || fail "NODE_MAJOR must be a Node.js major version such as 24, got \"${NODE_MAJOR:-}\""
[ -f "${PACKAGE:-}" ] || fail "PACKAGE must name the uploaded npm pack tarball, got \"${PACKAGE:-}\""
[ -d "${FILES:-}/system" ] || fail "FILES must name the uploaded ami/files directory (with system/), got \"${FILES:-}\""
# shellcheck source=/dev/null
os_id=$(. /etc/os-release && echo "${ID:-}:${VERSION_ID:-}")
[ "$os_id" = amzn:2023 ] || fail "expected Amazon Linux 2023 (amzn:2023 in /etc/os-release), found \"$os_id\""

step "checking that the instance metadata service refuses IMDSv1"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://169.254.169.254/latest/meta-data/ || true)
# Amazon Linux 2023 images launch IMDSv2-only (ImdsSupport=v2.0) unless an account-level default or the
# launch parameters say otherwise.
[ "$code" = 401 ] || fail "an IMDSv1 request was answered with HTTP $code, expected 401: the build instance must require IMDSv2 tokens (check the account's EC2 instance metadata defaults, or use Packer's Amazon plugin >= 1.1 with metadata_options { http_tokens = \"required\" })"

step "updating the system packages"
dnf -y -q upgrade

# Compilers and headers build the native modules (better-sqlite3, node-pty, native/pam-launch.c
# against libpam, and native/passwd-lookup.c); they are removed again below.
BUILD_PACKAGES=(gcc-c++ make pam-devel)
step "installing Node.js ${NODE_MAJOR} and the build tools (${BUILD_PACKAGES[*]})"
dnf -y -q install "nodejs${NODE_MAJOR}" "nodejs${NODE_MAJOR}-npm" python3 "${BUILD_PACKAGES[@]}"
# /usr/bin/node (the packages' `#!/usr/bin/env node`) is an alternatives link: pin it to this version.
alternatives --set node "/usr/bin/node-${NODE_MAJOR}"
node --version | grep -q "^v${NODE_MAJOR}\." || fail "node is $(node --version), expected v${NODE_MAJOR}"

step "installing teleport-ts from $(basename "$PACKAGE")"
# --omit=dev: runtime dependencies only. The postinstall step applies patches/ (patch-package) and
# builds build/pam-launch and build/passwd-lookup. Installs /usr/local/bin/{teleport,tctl,tsh}.
"npm-${NODE_MAJOR}" install --global --prefix /usr/local --omit=dev --no-audit --no-fund "$PACKAGE"
for bin in teleport tctl tsh; do
  [ -x "/usr/local/bin/$bin" ] || fail "/usr/local/bin/$bin is missing after npm install"
done
/usr/local/bin/teleport version
pkgroot=$("npm-${NODE_MAJOR}" root --global --prefix /usr/local)/teleport-ts
[ -x "$pkgroot/build/pam-launch" ] || fail "$pkgroot/build/pam-launch was not built: node sessions would run without PAM"
[ -x "$pkgroot/build/passwd-lookup" ] || fail "$pkgroot/build/passwd-lookup was not built: the node would fork getent for every login"

step "removing the build tools"
dnf -y -q remove "${BUILD_PACKAGES[@]}"
"npm-${NODE_MAJOR}" cache clean --force
rm -rf /root/.npm /root/.cache/node-gyp

step "creating the teleport user and directories"
# auth and proxy run as this user; the node and all-in-one run as root.
getent group teleport >/dev/null || groupadd --system teleport
getent passwd teleport >/dev/null ||
  useradd --system --gid teleport --home-dir /var/lib/teleport --no-create-home --shell /sbin/nologin \
    --comment "Teleport auth and proxy services" teleport
install -d -m 0700 -o teleport -g teleport /var/lib/teleport
install -d -m 0755 -o root -g root /etc/teleport.d
# The units append their output here (systemd opens the files as root); root reads them (the CloudWatch agent).
install -d -m 0750 -o root -g root /var/log/teleport
install -m 0644 -o root -g root "$FILES/logrotate-teleport" /etc/logrotate.d/teleport
# `sudo tctl ...` finds /usr/local/bin.
printf 'Defaults secure_path = /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n' > /etc/sudoers.d/10-teleport-path
chmod 0440 /etc/sudoers.d/10-teleport-path
visudo -cf /etc/sudoers.d/10-teleport-path >/dev/null

step "installing and enabling the systemd units"
units=()
for f in "$FILES"/system/*.service; do
  install -m 0644 -o root -g root "$f" /etc/systemd/system/
  units+=("$(basename "$f")")
done
install -d -m 0755 /etc/systemd/system-preset
install -m 0644 -o root -g root "$FILES/50-teleport.preset" /etc/systemd/system-preset/50-teleport.preset
systemctl daemon-reload
systemd-analyze verify "${units[@]/#//etc/systemd/system/}"
# Every unit is enabled; at boot teleport-generate-config writes the one role marker that lets one run.
systemctl enable "${units[@]}"

step "installing the CloudWatch agent (teleport-cloudwatch-agent starts it with the config teleport configure writes)"
dnf -y -q install amazon-cloudwatch-agent logrotate
[ -x /opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl ] || fail "amazon-cloudwatch-agent-ctl is missing after installing amazon-cloudwatch-agent"
# Started only by teleport-cloudwatch-agent, with the generated config, never with a default one.
systemctl disable amazon-cloudwatch-agent 2>/dev/null || true

step "enabling the SSM agent (Session Manager and the join secrets need no SSH key)"
# Amazon Linux 2023 images ship it; install it if a custom base image does not.
rpm -q amazon-ssm-agent >/dev/null || dnf -y -q install amazon-ssm-agent
systemctl enable amazon-ssm-agent

step "removing build-time secrets and per-instance state"
# SSH: no key of the build may log in to or identify the instances (host keys are made at first boot).
rm -f /root/.ssh/authorized_keys /home/*/.ssh/authorized_keys
rm -f /etc/ssh/ssh_host_*
rm -f /root/.bash_history /home/*/.bash_history
dnf clean all
rm -rf /var/cache/dnf/*
# cloud-init runs again, user data included, on the instances; each gets its own machine ID.
cloud-init clean --logs
truncate -s 0 /etc/machine-id
rm -rf "${STAGING:-$FILES}"

step "done: teleport-ts $(/usr/local/bin/teleport version 2>/dev/null | head -n1) on Node.js $(node --version)"
