# Sourced by the project's scripts (test.sh, pg.sh): the one way they install
# Debian's packages. Not a command of its own.
#
#   apt_install WHAT PACKAGE...   install the packages (as root), saying WHAT they are for
#
# Every apt-get here waits for Debian's package lock for a bounded time
# (APT_LOCK_TIMEOUT seconds, default 600) instead of failing at once: a machine
# with unattended upgrades holds it for minutes every day. While it waits it
# says which process holds the lock. `apt-get update` runs at most once per
# script run, child scripts included (APT_UPDATED is exported once it ran).

apt_lock_timeout="${APT_LOCK_TIMEOUT:-600}"

# apt_lock_holder: "PID (COMMAND)" of a process holding one of the package
# locks, or nothing. Read from /proc/locks (apt takes POSIX locks on these
# files), so it needs neither fuser nor lsof.
apt_lock_holder() {
  local f inode pid
  for f in /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock /var/cache/apt/archives/lock; do
    [ -e "$f" ] || continue
    inode="$(stat -c %i "$f")"
    pid="$(awk -v ino=":$inode" '$6 ~ ino"$" {print $5; exit}' /proc/locks 2>/dev/null)"
    if [ -n "$pid" ] && [ "$pid" != "$$" ]; then
      echo "$pid ($(cat "/proc/$pid/comm" 2>/dev/null || echo '?'))"
      return 0
    fi
  done
  return 1
}

# apt_get ARGS...: apt-get, waiting while another process holds the package
# lock and saying so. DPkg::Lock::Timeout makes apt-get wait for dpkg's lock
# itself, but `apt-get update` ignores it for the lists lock (apt 2.6), so the
# wait is also done here: before each try, and again when a try failed while
# another process held a lock.
apt_get() {
  local deadline=$((SECONDS + apt_lock_timeout)) holder said=-1
  while :; do
    while holder="$(apt_lock_holder)" && [ "$SECONDS" -lt "$deadline" ]; do
      if [ "$said" -lt 0 ] || [ $((SECONDS - said)) -ge 30 ]; then
        echo "apt: waiting for Debian's package lock, held by process $holder ($((deadline - SECONDS))s left of APT_LOCK_TIMEOUT=${apt_lock_timeout})…" >&2
        said=$SECONDS
      fi
      sleep 1
    done
    if DEBIAN_FRONTEND=noninteractive apt-get -o "DPkg::Lock::Timeout=$((deadline > SECONDS ? deadline - SECONDS : 1))" "$@"; then
      return 0
    fi
    local rc=$?
    # Another process took the lock between our look and apt-get's: wait again.
    if apt_lock_holder >/dev/null && [ "$SECONDS" -lt "$deadline" ]; then continue; fi
    return "$rc"
  done
}

apt_install() {
  local what="$1"; shift
  if [ "$(id -u)" -ne 0 ]; then
    echo "apt: cannot install $* ($what): not root (sudo apt-get install $*)" >&2
    return 1
  fi
  echo "installing Debian's $* ($what) with apt-get…" >&2
  if [ -z "${APT_UPDATED:-}" ]; then
    apt_get update -qq >&2 || { echo "apt: apt-get update failed" >&2; return 1; }
    export APT_UPDATED=1
  fi
  apt_get install -y -qq "$@" >/dev/null || {
    echo "apt: installing $* failed" >&2; return 1; }
}
