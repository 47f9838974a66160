# adapterd %post ($1: 1 install, 2 upgrade). Directories and a
# daemon-reload; adapterd is never started here (set defaults.base first,
# then systemctl enable --now adapterd).
systemd-tmpfiles --create adapterd.conf || :
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || :
fi
