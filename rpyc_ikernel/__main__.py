"""Launch the kernel: ``python -m rpyc_ikernel -f {connection_file}``."""

from ipykernel.kernelapp import IPKernelApp

from .kernel import RPycKernel

if __name__ == "__main__":
    IPKernelApp.launch_instance(
        kernel_class=RPycKernel, outstream_class="rpyc_ikernel.kernel.QuickFlushOutStream"
    )
