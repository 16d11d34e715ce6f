"""Peak resident memory of this process, for every benchmark child (ours and the peers'): the
kernel's high-water mark of the process's own memory (VmHWM), not `ru_maxrss`, which Linux
carries over from the parent across exec, so that every child of a harness holding 1 GB
reported at least 1 GB. Standard library only: each peer's venv imports it."""

import resource


def peak_mb() -> float:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:  # not Linux: the best there is
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
