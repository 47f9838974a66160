# adapterd %postun ($1: 0 erase, 1 upgrade). /var/lib/adapterd (drop dir,
# state, the records of the models adapterd created) and the user are kept
# on erase; the models in Ollama are never deleted. An upgrade restarts a
# running adapterd on the new binary.
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || :
	if [ "$1" -ge 1 ]; then
		systemctl try-restart adapterd.service || :
	fi
fi
