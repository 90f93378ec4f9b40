"""Starts a thread when imported: a module that makes forking its importer unsafe."""

import threading
import time

threading.Thread(target=time.sleep, args=(600,), name="started-at-import", daemon=True).start()
