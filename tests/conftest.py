import pyro
import pytest
import torch


@pytest.fixture(autouse=True)
def _fresh_pyro_state():
    """Every test starts with an empty param store, a fixed seed and validation on."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    pyro.enable_validation(True)
    yield
    pyro.clear_param_store()


@pytest.fixture
def float64():
    """Run a test with ``torch.float64`` as the default dtype, restoring the previous one after.

    Opt in per module with ``pytestmark = pytest.mark.usefixtures("float64")``.
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Run a test on one intra-op thread: the tensors in unit tests are small, and on a shared
    two-core machine a second thread mostly waits (measured: up to 10x slower training loops)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def jax_x64():
    """Run a JAX test module in float64 (``jax_enable_x64``), restoring the previous setting.

    Opt in with ``pytestmark = pytest.mark.usefixtures("jax_x64")`` after importorskip("jax").
    """
    import jax

    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)
