# adapterd %preun ($1: 0 erase, 1 upgrade). Erase stops and disables the
# service; an upgrade leaves it running for %postun to restart.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
	systemctl --no-reload disable --now adapterd.service || :
fi
