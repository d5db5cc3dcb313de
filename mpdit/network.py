"""Whether a host answers, asked once with a short timeout before a download that would
otherwise retry for half a minute on a machine without network (Inception weights, VAEs)."""
import socket


def reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False
