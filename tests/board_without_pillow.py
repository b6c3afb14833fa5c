"""A board without Pillow: our board server in a process where ``import PIL`` fails.

Live images must still work there for JPEG/PNG/GIF bytes; BMP is then transcoded by the kernel.
"""

import sys

sys.modules["PIL"] = None  # `import PIL` and `from PIL import Image` now raise ImportError

from rpyc_ikernel.server import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
