"""``python -m launch.bootstrap [--print-env] script.py [args]``: how every rank starts (see
vibetensor/launch/bootstrap.py)."""
import os
import sys

os.environ["VT_BOOTSTRAPPED"] = "1"  # before `import vibetensor`: its import-time bootstrap stands down

from vibetensor.launch.bootstrap import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
