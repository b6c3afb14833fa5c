"""rpyc_ikernel: a Jupyter kernel whose cells run on a small board through rpyc."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # RPycKernel pulls in ipykernel: import it only when asked, so the board server stays light.
    if name == "RPycKernel":
        from .kernel import RPycKernel

        return RPycKernel
    raise AttributeError(name)


__all__ = ["RPycKernel", "__version__"]
