"""python -m lightllm.server --model-dir DIR [--port 8000 ...] (see launcher.py for the flags)."""
import sys

from lightllm.server.launcher import main

if __name__ == "__main__":
    sys.exit(main())
