# adapterd %pre ($1: 1 install, 2 upgrade). The user and group exist before
# the files are laid down, so /etc/adapterd/config.yaml gets group adapterd
# from the package itself. The entries are adapterd.sysusers, inserted here
# by the package build; --replace names the file that will carry them.
systemd-sysusers --replace=/usr/lib/sysusers.d/adapterd.conf - <<'SYSUSERS'
@SYSUSERS@
SYSUSERS
