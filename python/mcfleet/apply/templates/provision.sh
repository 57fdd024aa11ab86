#!/bin/sh
# mcfleet provision (Debian): the pinned account, its subordinate ids, the agent's folder and
# the resolvers.  Idempotent: every step checks first and prints `ok: …` (nothing to do),
# `changed: …` (done) or `refuse: …` (exit 3, nothing changed by that step).  A UID/GID is
# never changed and never taken from another account (incident lesson 1); files are replaced
# atomically (temp + rename).  Values below are filled in by mcfleet (shell-quoted).
set -eu
NAME=@NAME@
UID_WANT=@UID@
GID_WANT=@GID@
HOME_DIR=@DIR@
SUBUID=@SUBUID@          # "start:count" or empty
SUBGID=@SUBGID@
RESOLVER=@RESOLVER@        # resolv.conf | systemd-resolved
RESOLV_FILE=@RESOLV_FILE@  # the file mcfleet writes for it (empty: resolvers left alone)
RESOLV_TEXT=@RESOLV_TEXT@  # its exact content
ZONE=@ZONE@                # the fleet's zone (systemd-resolved: routed to ZONE_SERVERS per link)
ZONE_SERVERS=@ZONE_SERVERS@
ZONE_UNIT_PATH=@ZONE_UNIT_PATH@  # the oneshot unit that sets it
ZONE_UNIT_TEXT=@ZONE_UNIT_TEXT@  # its exact content (empty: not zone-routed, an old unit is removed)
DHCLIENT_HOOK=@DHCLIENT_HOOK@    # dhclient's enter hook that keeps DHCP from rewriting resolv.conf
DHCLIENT_HOOK_TEXT=@DHCLIENT_HOOK_TEXT@  # its exact content (empty: not wanted, an old hook is removed)
DHCPCD_HOOK=@DHCPCD_HOOK@        # dhcpcd's enter hook, the same for dhcpcd (written when absent or mcfleet's)
DHCPCD_HOOK_TEXT=@DHCPCD_HOOK_TEXT@  # its exact content (empty: not wanted, mcfleet's old one is removed)
NM_DROPIN=@NM_DROPIN@            # NetworkManager's drop-in that keeps it from rewriting resolv.conf
NM_DROPIN_TEXT=@NM_DROPIN_TEXT@  # its exact content (empty: not wanted, an old one is removed)
MANAGED_MARK=@MANAGED_MARK@      # the first line of a file mcfleet wrote whole
DHCPCD_NOHOOK_RE=@DHCPCD_NOHOOK_RE@  # a dhcpcd.conf line that turns its resolv.conf hook off (grep -E)
ETC="${MCFLEET_ETC:-/etc}"  # tests point this at a scratch folder

refuse() { echo "refuse: $*"; exit 3; }
# put_file <path> <text>: the file holds exactly <text>, mode 0644, replaced atomically (temp +
# rename; a link in its place is replaced too).  Returns 0 when it changed the file; prints
# `ok: <path>` and returns 1 when it already held that.  Called as an `if` condition, where
# `set -e` does not act, so a failed step exits by itself.
put_file() {
    mkdir -p "$(dirname "$1")" || exit 1
    printf '%s' "$2" > "$1.mcfleet.tmp" || exit 1
    if [ -f "$1" ] && [ ! -L "$1" ] && cmp -s "$1.mcfleet.tmp" "$1"; then
        rm -f "$1.mcfleet.tmp"
        echo "ok: $1"
        return 1
    fi
    chmod 0644 "$1.mcfleet.tmp" || exit 1
    mv -f "$1.mcfleet.tmp" "$1" || exit 1
}
field() { echo "$1" | cut -d: -f"$2"; }

# --- the account database, read twice: through the name service (getent) and straight from
# /etc/passwd and /etc/group by a fixed parser.  A name service that answers other ids than
# the files (a lying or shadowing NSS module) is refused: ids are decided from both or not at all.
PASSWD_FILE="${MCFLEET_PASSWD:-/etc/passwd}"
GROUP_FILE="${MCFLEET_GROUP:-/etc/group}"
byname() { awk -F: -v k="$2" '$1 == k { print; exit }' "$1" 2>/dev/null || true; }
byid() { awk -F: -v k="$2" '$3 == k { print; exit }' "$1" 2>/dev/null || true; }
agree() {  # agree <what> <getent line> <file line> <first field> <last field>
    a=$(echo "$2" | cut -d: -f"$4-$5"); b=$(echo "$3" | cut -d: -f"$4-$5")
    [ "$a" = "$b" ] || refuse "$1: getent answers '${a:-nothing}', the file says '${b:-nothing}'; the name service disagrees with /etc/passwd or /etc/group, so no id is trusted (check /etc/nsswitch.conf)"
}

# --- check every refusal before changing anything: a refused run leaves the node as it was
g=$(getent group "$NAME" || true)
u=$(getent passwd "$NAME" || true)
agree "group $NAME" "$g" "$(byname "$GROUP_FILE" "$NAME")" 1 3
agree "user $NAME" "$u" "$(byname "$PASSWD_FILE" "$NAME")" 1 4
if [ -n "$g" ]; then
    [ "$(field "$g" 3)" = "$GID_WANT" ] || refuse "group $NAME exists with GID $(field "$g" 3), the pin is $GID_WANT; a GID is never changed on a live node"
else
    other=$(getent group "$GID_WANT" || true)
    agree "GID $GID_WANT" "$other" "$(byid "$GROUP_FILE" "$GID_WANT")" 1 3
    [ -z "$other" ] || refuse "GID $GID_WANT belongs to group $(field "$other" 1)"
fi
if [ -n "$u" ]; then
    [ "$(field "$u" 3)" = "$UID_WANT" ] || refuse "user $NAME exists with UID $(field "$u" 3), the pin is $UID_WANT; a UID is never changed on a live node"
    [ "$(field "$u" 4)" = "$GID_WANT" ] || refuse "user $NAME has primary GID $(field "$u" 4), the pin is $GID_WANT"
else
    other=$(getent passwd "$UID_WANT" || true)
    agree "UID $UID_WANT" "$other" "$(byid "$PASSWD_FILE" "$UID_WANT")" 1 4
    [ -z "$other" ] || refuse "UID $UID_WANT belongs to user $(field "$other" 1)"
fi
# subordinate ids: a range that differs moves only while nothing lives in it (no image layer or
# container in the user's podman storage, no file under /srv owned by it): after a move podman
# shows what the old range owns as nobody (65534), unwritable (the plan decides with the same function)
@SUBID_USE_FN@
have_u=$(grep "^$NAME:" "$ETC/subuid" 2>/dev/null | head -n1 | cut -d: -f2,3 || true)
have_g=$(grep "^$NAME:" "$ETC/subgid" 2>/dev/null | head -n1 | cut -d: -f2,3 || true)
moving=""
{ [ -z "$SUBUID" ] || [ -z "$have_u" ] || [ "$have_u" = "$SUBUID" ]; } || moving=1
{ [ -z "$SUBGID" ] || [ -z "$have_g" ] || [ "$have_g" = "$SUBGID" ]; } || moving=1
if [ -n "$moving" ]; then
    use=$(subid_use "$NAME" "$have_u" "$have_g")
    [ "$use" = "$NAME layers 0 containers 0 files 0" ] || refuse "$NAME has subuid $have_u subgid $have_g on this node, the host file says $SUBUID $SUBGID, and the old range is in use (${use#"$NAME" }): after a move podman shows what it owns as nobody; keep the node's range in host.json, or run podman system reset -f as $NAME before moving it"
fi
# resolvers: the mechanism in host.json must be the one the node runs, or the file is never read
resolved_link() { [ -L "$ETC/resolv.conf" ] && readlink "$ETC/resolv.conf" | grep -q 'systemd/resolve'; }
if [ -n "$RESOLV_FILE" ]; then
    if [ "$RESOLVER" = systemd-resolved ]; then
        resolved_link || refuse "host.json says systemd-resolved but $ETC/resolv.conf is not resolved's stub; set dns.resolver to resolv.conf, or enable systemd-resolved first"
    elif resolved_link; then
        refuse "host.json says resolv.conf but systemd-resolved manages $ETC/resolv.conf on this node; set dns.resolver to systemd-resolved"
    fi
fi

# --- group and user
if [ -n "$g" ]; then
    echo "ok: group $NAME ($GID_WANT)"
else
    groupadd --system --gid "$GID_WANT" "$NAME"
    echo "changed: group $NAME created with GID $GID_WANT"
fi
if [ -n "$u" ]; then
    echo "ok: user $NAME ($UID_WANT)"
else
    useradd --system --uid "$UID_WANT" --gid "$GID_WANT" --home-dir "$HOME_DIR" --no-create-home \
        --shell /usr/sbin/nologin "$NAME"
    echo "changed: user $NAME created with UID $UID_WANT"
fi

# --- subordinate ids (rootless podman): added when absent, never moved
subids() {  # subids <file> <start:count>
    [ -n "$2" ] || return 0
    have=$(grep "^$NAME:" "$1" 2>/dev/null | head -n1 | cut -d: -f2,3 || true)
    if [ "$have" = "$2" ]; then echo "ok: $1 $NAME:$2"; return 0; fi
    touch "$1"
    cp -p "$1" "$1.mcfleet.tmp"
    awk -F: -v n="$NAME" '$1 != n' "$1" > "$1.mcfleet.tmp"  # keeps the copy's owner and mode
    echo "$NAME:$2" >> "$1.mcfleet.tmp" && mv -f "$1.mcfleet.tmp" "$1"
    if [ -n "$have" ]; then echo "changed: $1 $NAME moved $have -> $2 (nothing lived in the old range)"; else echo "changed: $1 $NAME:$2 added"; fi
}
subids "$ETC/subuid" "$SUBUID"
subids "$ETC/subgid" "$SUBGID"

# --- the agent's folder
# (its parent is root's: the path is checked to be in a folder of its own under /srv, /opt, …;
# a link where the folder should be is refused, never followed)
[ ! -L "$HOME_DIR" ] || refuse "$HOME_DIR is a symbolic link; the agent's folder must be a real folder"
if [ -d "$HOME_DIR" ] && [ "$(stat -c '%u:%g %a' "$HOME_DIR")" = "$UID_WANT:$GID_WANT 750" ]; then
    echo "ok: $HOME_DIR"
else
    mkdir -p "$HOME_DIR"
    chown -h "$UID_WANT:$GID_WANT" "$HOME_DIR"
    chmod 0750 "$HOME_DIR"
    echo "changed: $HOME_DIR owned by $NAME, mode 0750"
fi
# the ids just used, read back from the files: what the caller records is what the node has
echo "ids: $(field "$(byname "$PASSWD_FILE" "$NAME")" 3):$(field "$(byname "$GROUP_FILE" "$NAME")" 3)"

# --- rootless podman for $NAME: its packages, subordinate ids, linger and the user's API socket
# (the agent talks to /run/user/<uid>/podman/podman.sock, never to root's podman).
# Skipped when MCFLEET_ETC points at a scratch folder: these steps change the machine itself.
if [ -z "${MCFLEET_ETC:-}" ]; then
    PODMAN_PKGS="podman uidmap catatonit slirp4netns fuse-overlayfs dbus-user-session"
    missing=""
    for p in $PODMAN_PKGS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
    done
    if [ -z "$missing" ]; then
        echo "ok: rootless podman packages"
    else
        export DEBIAN_FRONTEND=noninteractive
        # shellcheck disable=SC2086 # one word per package
        if ! apt-get install -y -q --no-install-recommends $missing >&2; then
            apt-get update -q >&2 || true
            apt-get install -y -q --no-install-recommends $missing >&2 \
                || { echo "cannot install$missing (apt-get failed; see above): rootless podman needs them" >&2; exit 1; }
        fi
        echo "changed: installed$missing"
    fi
    # Rootless podman maps container ids onto a subordinate range: when the host file names
    # none and the node has none, the next free 65536 ids after every existing range are taken.
    for f in "$ETC/subuid" "$ETC/subgid"; do
        if grep -q "^$NAME:" "$f" 2>/dev/null; then
            echo "ok: $f has a range for $NAME"
            continue
        fi
        start=$(awk -F: 'BEGIN { m = 100000 } NF == 3 && $2 + $3 > m { m = $2 + $3 } END { print m }' "$f" 2>/dev/null || echo 100000)
        touch "$f"
        cp -p "$f" "$f.mcfleet.tmp" && echo "$NAME:$start:65536" >> "$f.mcfleet.tmp" && mv -f "$f.mcfleet.tmp" "$f"
        echo "changed: $f $NAME:$start:65536 added (rootless podman)"
    done
    # linger: mcp's user manager (and with it the podman socket) runs from boot, without a login
    if [ -e "/var/lib/systemd/linger/$NAME" ]; then
        echo "ok: linger for $NAME"
    else
        if [ -d /run/systemd/system ]; then
            loginctl enable-linger "$NAME"
        else
            mkdir -p /var/lib/systemd/linger && touch "/var/lib/systemd/linger/$NAME"
        fi
        echo "changed: linger enabled for $NAME"
    fi
    # the user's podman.socket, enabled for $NAME and started now (systemd nodes only).
    # $NAME owns its home, so any folder on the wants path may be a link it made (to /etc, say):
    # root follows none of them.  The account reads and makes its own folders and link, so a
    # link leads only where it can write anyway, and what it makes is its own.
    HOME_OF=$(getent passwd "$NAME" | cut -d: -f6)
    wants="$HOME_OF/.config/systemd/user/sockets.target.wants"
    case "$HOME_OF" in /?*) ;; *) echo "the home of $NAME in /etc/passwd is '$HOME_OF', not an absolute path, and its podman.socket is enabled under its home: set it with usermod -d $HOME_DIR $NAME" >&2; exit 1 ;; esac
    if [ ! -e "$HOME_OF" ] && [ ! -L "$HOME_OF" ]; then
        # an older account whose home was never made: root makes it, mode 0750, only through
        # folders that are root's and that no one else can write (nothing $NAME can turn into a link)
        d=$HOME_OF
        while [ "$d" != / ]; do
            d=$(dirname "$d")
            [ -e "$d" ] || [ -L "$d" ] || continue
            case "$(stat -c '%u %A' "$d")" in
                0\ d????-??-?) ;;  # root's folder (not a link), neither group- nor world-writable
                *) echo "the home of $NAME, $HOME_OF, does not exist and $d is not a folder of root's that only root can write: make the home by hand (owned by $NAME) or usermod -d $HOME_DIR $NAME" >&2; exit 1 ;;
            esac
        done
        mkdir -p "$HOME_OF"
        chown -h "$UID_WANT:$GID_WANT" "$HOME_OF"
        chmod 0750 "$HOME_OF"
        echo "changed: $HOME_OF made (the home of $NAME), owned by $NAME, mode 0750"
    fi
    if (cd / && runuser -u "$NAME" -- test -L "$wants/podman.socket"); then
        echo "ok: podman.socket enabled for $NAME"
    elif (cd / && runuser -u "$NAME" -- sh -c 'mkdir -p "$1" && ln -sfn /usr/lib/systemd/user/podman.socket "$1/podman.socket"' sh "$wants") >&2; then
        echo "changed: podman.socket enabled for $NAME"
    else
        echo "podman.socket not enabled: $NAME cannot make $wants/podman.socket (see above; a folder on that path may be a link out of its home: remove it, and the next provision makes the folders)" >&2
        exit 1
    fi
    sock="/run/user/$UID_WANT/podman/podman.sock"
    bus="/run/user/$UID_WANT/bus"
    as_user="runuser -u $NAME -- env XDG_RUNTIME_DIR=/run/user/$UID_WANT DBUS_SESSION_BUS_ADDRESS=unix:path=$bus"
    # A socket file alone proves nothing: a stopped user manager leaves podman.sock behind.
    if [ -d /run/systemd/system ] && systemctl is-active --quiet "user@$UID_WANT.service" && [ -S "$sock" ] \
        && $as_user systemctl --user is-active --quiet podman.socket; then
        echo "ok: $sock"
    elif [ -d /run/systemd/system ]; then
        # Linger only asks logind to start the user manager, asynchronously, and an earlier linger
        # leaves it stopped if it died since: starting it here waits until it is up (a no-op when
        # it runs; the unit is Type=notify) and, when it cannot start, says why.
        if ! timeout 120 systemctl start "user@$UID_WANT.service" >&2; then
            echo "the user manager of $NAME (user@$UID_WANT.service) did not start:" >&2
            systemctl status --no-pager --lines=20 "user@$UID_WANT.service" "user-runtime-dir@$UID_WANT.service" >&2 || true
            exit 1
        fi
        i=0
        while [ ! -S "$bus" ] && [ "$i" -lt 20 ]; do sleep 0.5; i=$((i + 1)); done
        [ -S "$bus" ] || { echo "the user manager of $NAME runs but $bus is missing (is dbus-user-session installed?)" >&2; exit 1; }
        $as_user systemctl --user start podman.socket >&2
        [ -S "$sock" ] || { echo "podman.socket of $NAME started but $sock is missing" >&2; exit 1; }
        echo "changed: $sock listening"
    elif [ -S "$sock" ]; then
        echo "ok: $sock"
    fi
    # a moved range: podman's pause process still runs in a namespace of the old range until
    # `podman system migrate` (measured: before it, containers keep the old mapping)
    if [ -n "$moving" ] && [ -d "/run/user/$UID_WANT" ] && command -v podman >/dev/null 2>&1; then
        (cd / && runuser -u "$NAME" -- env XDG_RUNTIME_DIR="/run/user/$UID_WANT" HOME="$HOME_OF" podman system migrate >&2)
        echo "changed: podman system migrate for $NAME (new subordinate ids)"
    fi
fi

# --- NetworkManager (where installed) rewrites /etc/resolv.conf from its connections' DNS when it starts,
# reloads or a connection changes, dropping the fallbacks; `dns=none` in a drop-in read after the others
# keeps it from that file.  Before resolv.conf is written: a running NetworkManager re-reads its
# configuration on reload, and one without the drop-in would rewrite the file at that moment.
nm_reload() {
    if [ -z "${MCFLEET_ETC:-}" ] && [ -d /run/systemd/system ] && systemctl is-active --quiet NetworkManager.service; then
        systemctl reload NetworkManager.service
    fi
}
target="$ETC${NM_DROPIN#/etc}"
if [ -z "$NM_DROPIN_TEXT" ] && [ -f "$target" ]; then
    rm -f "$target"
    nm_reload
    echo "changed: $target removed (this host's resolver is not resolv.conf)"
elif [ -n "$NM_DROPIN_TEXT" ] && [ -x /usr/sbin/NetworkManager ]; then
    if put_file "$target" "$NM_DROPIN_TEXT"; then
        nm_reload
        echo "changed: $target (NetworkManager leaves resolv.conf alone)"
    fi
fi

# --- resolvers: the fleet's nameservers, then a public fallback (a node that asks only the fleet's
# resolvers loses every name when they die), written so that
# the node's resolver really fails over: glibc gets 3 servers and `options timeout:1 attempts:2`,
# systemd-resolved gets every server in DNS= (it switches to the next one that answers)
if [ -n "$RESOLV_FILE" ]; then
    target="$ETC${RESOLV_FILE#/etc}"
    if put_file "$target" "$RESOLV_TEXT"; then
        if [ "$RESOLVER" = systemd-resolved ] && [ -z "${MCFLEET_ETC:-}" ]; then
            systemctl try-reload-or-restart systemd-resolved.service
        fi
        echo "changed: $target (fleet nameservers, then fallbacks that fail over)"
    fi
fi

# --- Debian's DHCP client rewrites /etc/resolv.conf with the lease's servers at every bind and renewal,
# dropping the fallbacks; dhclient-script sources its enter hooks first, and this one's
# make_resolv_conf replaces its own.  Written only where dhclient is installed.
target="$ETC${DHCLIENT_HOOK#/etc}"
if [ -z "$DHCLIENT_HOOK_TEXT" ] && [ -f "$target" ]; then
    rm -f "$target"
    echo "changed: $target removed (this host's resolver is not resolv.conf)"
elif [ -n "$DHCLIENT_HOOK_TEXT" ] && { [ -x /sbin/dhclient-script ] || [ -x /usr/sbin/dhclient-script ]; }; then
    if put_file "$target" "$DHCLIENT_HOOK_TEXT"; then
        echo "changed: $target (DHCP leases leave resolv.conf alone)"
    fi
fi

# --- dhcpcd does the same through its resolv.conf hook, which its enter hook can skip.  That file may
# be the operator's: only an absent one or mcfleet's own (its first line) is written or removed, and
# not at all where /etc/dhcpcd.conf already says `nohook resolv.conf`.
target="$ETC${DHCPCD_HOOK#/etc}"
ours=no
if [ -f "$target" ] && [ "$(head -n 1 "$target" | cut -c1-${#MANAGED_MARK})" = "$MANAGED_MARK" ]; then ours=yes; fi
if [ -z "$DHCPCD_HOOK_TEXT" ] && [ "$ours" = yes ]; then
    rm -f "$target"
    echo "changed: $target removed (this host's resolver is not resolv.conf)"
elif [ -n "$DHCPCD_HOOK_TEXT" ] && { [ -x /usr/lib/dhcpcd/dhcpcd-run-hooks ] || [ -x /lib/dhcpcd/dhcpcd-run-hooks ]; } \
    && ! grep -qsE "$DHCPCD_NOHOOK_RE" "$ETC/dhcpcd.conf"; then
    if [ -e "$target" ] && [ "$ours" = no ]; then
        echo "ok: $target (the operator's; left as it is)"
    elif put_file "$target" "$DHCPCD_HOOK_TEXT"; then
        echo "changed: $target (DHCP leases leave resolv.conf alone)"
    fi
fi

# --- systemd-resolved: the fleet's zone goes to its nameservers per link (set by a oneshot unit on
# the link the kernel routes each one through), every other name to the public resolvers of the
# global DNS=, so no lookup waits ~5 s on each silent fleet nameserver (systemd 252's fixed wait)
zone_routed() {  # every zone server is a DNS server of a link whose domains include ~ZONE
    { resolvectl domain; echo --; resolvectl dns; } 2>/dev/null | awk -v zone="~$ZONE" -v want="$ZONE_SERVERS" '
        $0 == "--" { part = 2; next }
        { i = index($0, ": "); if (i == 0) next; k = substr($0, 1, i - 1); n = split(substr($0, i + 2), w, " ") }
        part != 2 { for (j = 1; j <= n; j++) if (w[j] == zone) z[k] = 1; next }
        z[k] { for (j = 1; j <= n; j++) got[w[j]] = 1 }
        END { n = split(want, s, " "); for (j = 1; j <= n; j++) if (!(s[j] in got)) exit 1 }'
}
unit_name=$(basename "$ZONE_UNIT_PATH")
target="$ETC${ZONE_UNIT_PATH#/etc}"
if [ -z "$ZONE_UNIT_TEXT" ] && [ -f "$target" ]; then
    if [ -z "${MCFLEET_ETC:-}" ] && [ -d /run/systemd/system ]; then
        systemctl disable --quiet "$unit_name" || true
    fi
    rm -f "$target"
    [ -n "${MCFLEET_ETC:-}" ] || [ ! -d /run/systemd/system ] || systemctl daemon-reload
    echo "changed: $target removed (this host's resolver routes no zone)"
fi
if [ -n "$ZONE_UNIT_TEXT" ]; then
    unit_changed=""
    if put_file "$target" "$ZONE_UNIT_TEXT"; then
        unit_changed=1
        echo "changed: $target ($ZONE to $ZONE_SERVERS per link)"
    fi
    if [ -z "${MCFLEET_ETC:-}" ] && [ -d /run/systemd/system ]; then
        [ -z "$unit_changed" ] || systemctl daemon-reload
        if systemctl is-enabled --quiet "$unit_name"; then
            echo "ok: $unit_name enabled"
        else
            systemctl enable --quiet "$unit_name"
            echo "changed: $unit_name enabled at boot"
        fi
        if [ -z "$unit_changed" ] && zone_routed; then
            echo "ok: $ZONE routed to $ZONE_SERVERS"
        else
            systemctl restart "$unit_name" || { echo "$unit_name failed: see journalctl -u $unit_name" >&2; exit 1; }
            if zone_routed; then
                echo "changed: $ZONE routed to $ZONE_SERVERS (resolvectl)"
            else  # the unit sets every server the host has a route to; the plan keeps showing the rest
                echo "changed: $ZONE routed to those of $ZONE_SERVERS this host has a route to (journalctl -u $unit_name)"
            fi
        fi
    fi
fi
