"""ticketlab's native CSR kernels (issue #14): exact on hand cases, equal to torch's dense
products to rounding at every batch size, batch-invariant, and absent without a compiler."""


import pytest
import torch

from ticketlab import kernels
from ticketlab.export.sparse import to_csr

native = pytest.mark.skipif(not kernels.available(), reason=f"no native kernels: {kernels.unavailable_reason()}")


def csr_of(dense: torch.Tensor) -> tuple[kernels.Csr, torch.Tensor]:
    csr = to_csr(dense)
    return kernels.Csr(csr["crow"], csr["col"], dense.shape[1]), csr["values"]


def random_weight(rows: int, cols: int, density: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=g) * (torch.rand(rows, cols, generator=g) < density)


@native
def test_product_and_gradient_on_a_hand_computed_case():
    # W = [[1, 0, 2], [0, 0, 0], [0, 3, 0]], b = [0.5, 7, -10], two inputs x1 = [1, 2, 3], x2 = [-1, 0, 1]:
    # W x1 + b = [1 + 6 + 0.5, 7, 6 - 10] = [7.5, 7, -4]; W x2 + b = [-1 + 2 + 0.5, 7, -10] = [1.5, 7, -10].
    weight = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    csr, values = csr_of(weight)
    bias = torch.tensor([0.5, 7.0, -10.0])
    x_t = torch.tensor([[1.0, -1.0], [2.0, 0.0], [3.0, 1.0]])  # (in, batch)
    assert torch.equal(csr.mm(values, x_t, bias), torch.tensor([[7.5, 1.5], [7.0, 7.0], [-4.0, -10.0]]))
    assert torch.equal(csr.mm(values, x_t, bias, relu=True), torch.tensor([[7.5, 1.5], [7.0, 7.0], [0.0, 0.0]]))
    assert torch.equal(csr.mm(values, x_t), torch.tensor([[7.0, 1.0], [0.0, 0.0], [6.0, 0.0]]))
    # gradient of the kept values for dL/dy = [[1, 2], [5, 5], [-1, 0]] (out, batch):
    # (0,0): 1*1 + 2*(-1) = -1; (0,2): 1*3 + 2*1 = 5; (2,1): -1*2 + 0*0 = -2
    grad_t = torch.tensor([[1.0, 2.0], [5.0, 5.0], [-1.0, 0.0]])
    assert torch.equal(csr.sddmm(grad_t, x_t), torch.tensor([-1.0, 5.0, -2.0]))


@native
def test_relu_keeps_nan_as_torch_does():
    csr, values = csr_of(torch.tensor([[1.0], [1.0]]))
    out = csr.mm(values, torch.tensor([[float("nan")] * 9]), torch.tensor([0.0, -1.0]), relu=True)
    assert torch.isnan(out).all()
    out = csr.mm(values, torch.tensor([[-2.0] * 9]), torch.tensor([0.0, 0.0]), relu=True)
    assert torch.equal(out, torch.zeros(2, 9))


@native
@pytest.mark.parametrize("batch", [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 31, 32, 33, 60, 67])
def test_matches_dense_products_at_every_batch_size(batch):
    weight = random_weight(37, 53, 0.1)
    weight[5] = 0  # an empty row
    csr, values = csr_of(weight)
    bias = torch.randn(37)
    x = torch.randn(batch, 53)
    x_t = kernels.transpose(x)
    assert torch.equal(x_t, x.t())
    torch.testing.assert_close(csr.mm(values, x_t, bias, relu=True), torch.relu(x @ weight.t() + bias).t())
    grad_t = torch.randn(37, batch)
    rows, cols = weight.nonzero(as_tuple=True)
    torch.testing.assert_close(csr.sddmm(grad_t, x_t), (grad_t @ x)[rows, cols])


@native
def test_an_output_does_not_depend_on_the_batch_it_is_in():
    """Bit for bit (the sign of a zero too: an empty row with bias -0), on any CPU: every path
    does the same operations in the same order, none fused (-ffp-contract=off)."""
    weight = random_weight(50, 80, 0.05)
    weight[3] = 0
    csr, values = csr_of(weight)
    bias = torch.randn(50)
    bias[3] = -0.0
    x_t = torch.randn(80, 75)
    together = csr.mm(values, x_t, bias).view(torch.int32)
    for j in (0, 31, 32, 63, 64, 70, 74):  # in a 32-wide block, an 8-wide block, the scalar tail
        alone = csr.mm(values, x_t[:, j:j + 1].contiguous(), bias).view(torch.int32)
        assert torch.equal(alone[:, 0], together[:, j])
    for batch in (5, 13, 40):  # the same columns through the scalar, 8-wide and 32-wide paths
        assert torch.equal(csr.mm(values, x_t[:, :batch].contiguous(), bias).view(torch.int32), together[:, :batch])


@native
def test_bad_activations_are_refused_with_the_shape_wanted():
    csr, values = csr_of(random_weight(4, 6, 0.5))
    with pytest.raises(ValueError, match=r"contiguous \(6, batch\) float32"):
        csr.mm(values, torch.randn(5, 3))
    with pytest.raises(ValueError, match="float32"):
        csr.mm(values, torch.randn(6, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="contiguous"):
        csr.mm(values, torch.randn(3, 6).t())
    with pytest.raises(ValueError, match="non-zeros"):
        csr.mm(values[:-1], torch.randn(6, 3))


@pytest.fixture
def rebuilt(tmp_path, monkeypatch):
    """`kernels.available()` and `unavailable_reason()` as a fresh process would see them under
    the environment the test sets (cache in a folder of its own); the usual library afterwards."""
    monkeypatch.setenv("TICKETLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TICKETLAB_NATIVE", raising=False)

    def check() -> tuple[bool, str | None]:
        kernels.library.cache_clear()
        return kernels.available(), kernels.unavailable_reason()

    yield check
    kernels.library.cache_clear()


def test_without_a_compiler_the_kernels_are_absent_and_say_why(rebuilt, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("CC", "")
    assert rebuilt() == (False, "no C compiler found (set CC, or install gcc or clang)")
    monkeypatch.setenv("TICKETLAB_NATIVE", "0")
    assert rebuilt() == (False, "TICKETLAB_NATIVE=0")


@native
def test_a_compile_error_is_reported_not_raised(rebuilt, tmp_path, monkeypatch):
    bad = tmp_path / "cc"
    bad.write_text("#!/bin/sh\necho 'error: this compiler is broken' >&2\nexit 1\n")
    bad.chmod(0o755)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("CC", str(bad))
    available, reason = rebuilt()
    assert not available and "could not compile csr.c: error: this compiler is broken" in reason
    assert not list((tmp_path / "cache").glob("*"))  # no half-written library left behind


@native
@pytest.mark.parametrize("batch", [1, 6, 32, 70])
def test_a_chain_equals_its_layers_one_by_one(batch):
    # 20 -> 15 -> 9 -> 4 with ReLU after the first two; 70 = two blocks of 32 and a tail of 6
    weights = [random_weight(15, 20, 0.3, 1), random_weight(9, 15, 0.3, 2), random_weight(4, 9, 0.5, 3)]
    biases = [torch.randn(15), torch.randn(9), None]
    layers = [(*csr_of(w), b, relu) for w, b, relu in zip(weights, biases, (True, True, False))]
    chain = kernels.CsrChain(layers)
    x = torch.randn(batch, 20)
    expected = x
    for weight, bias, (_, _, _, relu) in zip(weights, biases, layers):
        expected = expected @ weight.t() + (0 if bias is None else bias)
        expected = torch.relu(expected) if relu else expected
    torch.testing.assert_close(chain(x), expected)
    h_t = kernels.transpose(x)
    for csr, values, bias, relu in layers:  # the per-layer kernel, summing in the same order
        h_t = csr.mm(values, h_t, bias, relu)
    assert torch.equal(chain(x), h_t.t())


@native
def test_a_chain_refuses_layers_that_do_not_fit():
    first, second = csr_of(random_weight(5, 8, 0.5)), csr_of(random_weight(3, 6, 0.5))
    with pytest.raises(ValueError, match="layer 1 reads 6 features, the one before gives 5"):
        kernels.CsrChain([(*first, None, True), (*second, None, False)])
    chain = kernels.CsrChain([(*first, None, False)])
    with pytest.raises(ValueError, match=r"contiguous \(batch, 8\) float32"):
        chain(torch.randn(4, 7))


@native
def test_the_gradient_through_a_relu_and_the_row_sums_match_torch():
    y = torch.tensor([[1.0, 0.0, -2.0], [float("nan"), 3.0, -0.0]])
    grad = torch.tensor([[5.0, 6.0, 7.0], [8.0, 9.0, 10.0]])
    leaf = y.clone().requires_grad_()
    torch.relu(leaf).backward(grad)
    assert torch.equal(leaf.grad, torch.tensor([[5.0, 0.0, 0.0], [8.0, 9.0, 0.0]]))  # torch: NaN passes
    through, sums = kernels.grad_rows(grad, torch.relu(y), sums=True)
    assert torch.equal(through, leaf.grad)
    assert torch.equal(sums, torch.tensor([5.0, 17.0]))
    same, sums = kernels.grad_rows(grad, None, sums=True)
    assert same is grad and torch.equal(sums, torch.tensor([18.0, 27.0]))


@native
@pytest.mark.parametrize("batch", [1, 7, 8, 60])
def test_the_input_gradient_from_w_own_pattern(batch):
    weight = random_weight(30, 45, 0.1, 4)
    csr, values = csr_of(weight)
    grad_t = torch.randn(30, batch)
    torch.testing.assert_close(csr.mm_t(values, grad_t), weight.t() @ grad_t)


@native
@pytest.mark.parametrize("batch", [8, 11, 60])
def test_the_relu_and_bias_gradients_in_vector_lanes(batch):
    y = torch.relu(torch.randn(5, batch))
    y[0, 3] = float("nan")
    grad = torch.randn(5, batch)
    through, sums = kernels.grad_rows(grad, y, sums=True)
    assert torch.equal(through, grad.masked_fill(y <= 0, 0.0))
    torch.testing.assert_close(sums, through.sum(1))
