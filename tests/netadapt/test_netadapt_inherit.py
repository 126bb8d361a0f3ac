"""NetAdapt weight inheritance: the narrower net computes what the wide one would with
the removed channels zeroed, keeps the largest-norm filters, and rejects bad input."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
import torch

from helpers import fill_by_order, fixed_input
from latency.shrink import random_shrink, set_expansion, set_group_width
from netadapt.inherit import inherit, keep_indices
from search_spaces.arch import Arch, Head, Layer, SERule, Stem
from search_spaces.builder import build_model
from search_spaces.channels import STEM, expandable, group_width, residual_groups
from search_spaces.factorized import FactorizedSpace
from search_spaces.infra.errors import UserError
from search_spaces.reference import load_reference
from search_spaces.transforms import with_input, with_width_multiplier



@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convs: a second thread only contends with whatever else runs on the box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SE_RULES = {"mid": SERule(gate="hsigmoid", ratio=0.25, of="mid", divisor=8),
            "in": SERule(gate="sigmoid", ratio=0.25, of="in", divisor=1)}


def small_arch(se: SERule) -> Arch:
    """SE everywhere it fits, expanding and non-expanding mbconvs, a dsconv, a conv, and
    three residual groups of 3, 2 and 3 members (identity and pooling residuals)."""
    def mb(i: int, e: int, o: int, k: int, s: int, act: str, skip: str, with_se: bool = True,
           expand: bool = True) -> Layer:
        return Layer("mbconv", i, o, k, s, act, se.squeeze(i, e) if with_se else 0, skip,
                     e, expand)
    layers = (
        mb(16, 48, 16, 3, 1, "relu", "identity"),
        mb(16, 16, 16, 5, 1, "hswish", "identity", expand=False),
        Layer("dsconv", 16, 24, 3, 2, "relu", se.squeeze(16, 16), "none"),
        Layer("conv", 24, 24, 3, 1, "relu", 0, "identity"),
        mb(24, 72, 32, 5, 2, "hswish", "none"),
        mb(32, 96, 32, 3, 1, "hswish", "identity"),
        mb(32, 64, 32, 3, 2, "relu", "pool", with_se=False),
    )
    return Arch(resolution=16, num_classes=10, stem=Stem(16, 3, 1, "hswish"), layers=layers,
                head=Head("v3", 64, "hswish", 80), se=se)


def fused_arch(se: SERule) -> Arch:
    """fused_mbconv layers with and without expansion, SE on both, in residual groups,
    next to an mbconv that consumes a fused layer's output."""
    def fused(i: int, e: int | None, o: int, k: int, s: int, skip: str) -> Layer:
        mid = e or o
        return Layer("fused_mbconv", i, o, k, s, "hswish", se.squeeze(i, mid), skip,
                     mid, e is not None)
    layers = (
        fused(16, 48, 16, 3, 1, "identity"),
        fused(16, None, 16, 5, 1, "identity"),
        fused(16, 64, 24, 3, 2, "none"),
        Layer("mbconv", 24, 24, 3, 1, "relu", 0, "identity", 24, False),
        fused(24, None, 32, 3, 2, "none"),
    )
    return Arch(resolution=16, num_classes=10, stem=Stem(16, 3, 1, "hswish"), layers=layers,
                head=Head("v3", 64, "hswish", 80), se=se)


def narrowings(arch: Arch) -> dict[str, Arch]:
    """Each expansion alone, each residual group alone, the head, and all at once."""
    cases = {f"exp{i}": set_expansion(arch, i, arch.layers[i].exp_ch - 16)
             for i in expandable(arch)}
    cases.update({f"group{g}": set_group_width(arch, group, group_width(arch, group) - 8)
                  for g, group in enumerate(residual_groups(arch))})
    cases["head"] = arch.replace(head=replace(arch.head, conv_ch=40, hidden_ch=48))
    cases["x0.75"] = with_width_multiplier(arch, 0.75)
    return cases


@torch.no_grad()
def zero_removed(arch: Arch, model: torch.nn.Module, keep: dict) -> None:
    """Make every channel `keep` drops exactly zero wherever it appears in `model`."""
    sd = model.state_dict()

    def zero(prefix: str, removed: torch.Tensor, bn: bool = True) -> None:
        sd[f"{prefix}.0.weight"][removed] = 0
        if bn:  # BN beta would otherwise make a zero channel non-zero
            sd[f"{prefix}.1.weight"][removed] = 0
            sd[f"{prefix}.1.bias"][removed] = 0

    groups = residual_groups(arch)

    def out_conv(m: int) -> str:  # the module writing a residual group member
        if m == STEM:
            return "stem"
        body = f"layers.{m}.body"
        return f"{body}.project" if f"{body}.project.0.weight" in sd else f"{body}.conv"

    def depthwise(i: int) -> str | None:
        name = f"layers.{i}.body.depthwise"
        return name if f"{name}.0.weight" in sd else None

    for node, kept in keep.items():
        kind, i = node[0], node[-1]
        if kind == "group":
            producer = f"{out_conv(groups[i][0])}.0"
        else:
            producer = {"mid": f"layers.{i}.body.expand.0", "se": f"layers.{i}.body.se.reduce",
                        "head": "head.conv.0", "hidden": "head.hidden.0"}[kind]
        width = sd[f"{producer}.weight"].shape[0]
        removed = torch.ones(width, dtype=torch.bool)
        removed[kept] = False
        if kind == "group":
            for m in groups[i]:
                zero(out_conv(m), removed)
                # Consumers whose depthwise runs on the residual stream itself.
                nxt = m + 1
                if nxt < len(arch.layers) and depthwise(nxt) and not arch.layers[nxt].expand:
                    zero(depthwise(nxt), removed)
        elif kind == "mid":
            zero(f"layers.{i}.body.expand", removed)
            if depthwise(i):  # an mbconv's (a fused_mbconv's expansion has none)
                zero(depthwise(i), removed)
        elif kind == "se":
            sd[f"layers.{i}.body.se.reduce.weight"][removed] = 0
            sd[f"layers.{i}.body.se.reduce.bias"][removed] = 0
            sd[f"layers.{i}.body.se.expand.weight"][:, removed] = 0
        elif kind == "head":
            zero("head.conv", removed)
        else:
            zero("head.hidden", removed, bn=False)
            sd["head.hidden.0.bias"][removed] = 0


def filled(arch: Arch) -> torch.nn.Module:
    model = build_model(arch)
    fill_by_order(model)
    return model.eval()


def load(arch: Arch, state: dict) -> torch.nn.Module:
    model = build_model(arch)
    model.load_state_dict(state, strict=True)
    return model.eval()


@pytest.mark.parametrize("make", [small_arch, fused_arch], ids=["mixed", "fused"])
@pytest.mark.parametrize("se", sorted(SE_RULES))
def test_inherited_net_equals_wide_net_with_removed_channels_zeroed(se: str, make) -> None:
    arch = make(SE_RULES[se])
    x = fixed_input(arch.resolution)
    changed_se = False
    for name, new in narrowings(arch).items():
        model = filled(arch)
        keep = keep_indices(arch, model.state_dict(), new)
        assert keep, name
        changed_se |= any(node[0] == "se" for node in keep)
        zero_removed(arch, model, keep)
        state = model.state_dict()
        # Zeroing only lowers the removed channels' norms: the same channels survive.
        again = keep_indices(arch, state, new)
        assert again.keys() == keep.keys() and all(torch.equal(again[n], keep[n]) for n in keep)
        with torch.no_grad():
            want, got = model(x), load(new, inherit(arch, state, new))(x)
        assert want.abs().max() > 0.1, name  # the comparison is not vacuous
        assert torch.allclose(got, want, atol=1e-5), (name, (got - want).abs().max())
    assert changed_se  # some cut re-sized an SE squeeze on the way


def test_group_cut_spans_every_member() -> None:
    arch = small_arch(SE_RULES["in"])
    groups = residual_groups(arch)
    assert [len(g) for g in groups] == [3, 2, 3]
    new = set_group_width(arch, groups[0], 8)
    keep = keep_indices(arch, filled(arch).state_dict(), new)
    # One shared channel set for the whole group; SE "of in" follows the input width.
    assert set(keep) == {("group", 0), ("se", 0), ("se", 1), ("se", 2)}
    assert keep[("group", 0)].shape == (8,)
    state = inherit(arch, filled(arch).state_dict(), new)
    for m in (0, 1):
        assert state[f"layers.{m}.body.project.0.weight"].shape[0] == 8
    assert state["layers.1.body.depthwise.0.weight"].shape == (8, 1, 5, 5)


def test_identity_inheritance_and_dtype() -> None:
    arch = small_arch(SE_RULES["mid"])
    state = {k: v.double() if v.is_floating_point() else v
             for k, v in filled(arch).state_dict().items()}
    assert keep_indices(arch, state, arch) == {}
    same = inherit(arch, state, arch)
    assert same.keys() == state.keys() and all(torch.equal(same[k], state[k]) for k in state)
    narrow = inherit(arch, state, with_width_multiplier(arch, 0.5))
    assert all(v.dtype == state[k].dtype for k, v in narrow.items())


def random_archs() -> list[tuple[str, Arch]]:
    out = []
    for family, skeleton in (("mnasnet", None), ("mobilenetv3", "mobilenetv3_small")):
        space = FactorizedSpace(family, skeleton, 32, 1, 10)
        for seed in range(2):
            out.append((f"{family}-{seed}", space.decode(space.sample(random.Random(seed)))))
    return out


@pytest.mark.parametrize("name,arch", random_archs(), ids=lambda v: v if isinstance(v, str) else "")
def test_random_shrinks_load_strictly_and_run(name: str, arch: Arch) -> None:
    model = build_model(arch)
    new = random_shrink(arch, random.Random(len(name)), 8)
    net = load(new, inherit(arch, model.state_dict(), new))
    with torch.no_grad():
        assert net(fixed_input(32)).shape == (1, 10)


def test_width_multiplier_on_reference_net() -> None:
    arch = with_input(load_reference("mobilenet_v3_small"), 32, 10, 1)
    new = with_width_multiplier(arch, 0.5)
    net = load(new, inherit(arch, build_model(arch).state_dict(), new))
    with torch.no_grad():
        assert torch.isfinite(net(fixed_input(32))).all()


@torch.no_grad()
def set_row_norms(weight: torch.Tensor, norms: list[float]) -> None:
    rows = torch.randn(weight.shape, generator=torch.Generator().manual_seed(3)).flatten(1)
    rows = rows / rows.norm(dim=1, keepdim=True) * torch.tensor(norms)[:, None]
    weight.copy_(rows.view(weight.shape))


def test_keeps_largest_norm_filters_and_squeeze_units() -> None:
    arch = small_arch(SE_RULES["mid"])
    model = build_model(arch)
    sd = model.state_dict()
    exp_norms = [float((7 * c) % 72) + 1 for c in range(72)]  # a permutation of 1..72
    se_norms = [float((5 * c) % 24) + 1 for c in range(24)]
    set_row_norms(sd["layers.4.body.expand.0.weight"], exp_norms)
    set_row_norms(sd["layers.4.body.se.reduce.weight"], se_norms)
    new = set_expansion(arch, 4, 40)
    assert new.layers[4].se_ch == 16
    keep = keep_indices(arch, sd, new)
    assert set(keep) == {("mid", 4), ("se", 4)}
    assert keep[("mid", 4)].tolist() == sorted(c for c in range(72) if exp_norms[c] > 32)
    assert keep[("se", 4)].tolist() == sorted(c for c in range(24) if se_norms[c] > 8)
    state = inherit(arch, sd, new)
    assert torch.equal(state["layers.4.body.expand.0.weight"],
                       sd["layers.4.body.expand.0.weight"][keep[("mid", 4)]])
    assert torch.equal(state["layers.4.body.se.reduce.weight"],
                       sd["layers.4.body.se.reduce.weight"][keep[("se", 4)]][:, keep[("mid", 4)]])


def test_group_ranks_by_norms_summed_over_producers() -> None:
    arch = Arch(resolution=8, num_classes=3, stem=Stem(4, 3, 1, "relu"),
                layers=(Layer("mbconv", 4, 4, 3, 1, "relu", 0, "identity", 8, True),
                        Layer("conv", 4, 8, 3, 2, "relu")),
                head=Head("v2", 16))
    sd = build_model(arch).state_dict()
    set_row_norms(sd["stem.0.weight"], [6.0, 0.1, 2.0, 4.5])   # alone it keeps 0, 3
    set_row_norms(sd["layers.0.body.project.0.weight"], [0.1, 6.0, 4.5, 2.0])  # alone 1, 2
    new = set_group_width(arch, residual_groups(arch)[0], 2)
    assert keep_indices(arch, sd, new)[("group", 0)].tolist() == [2, 3]  # sums 6.5, 6.5
    state = inherit(arch, sd, new)
    assert state["layers.1.body.conv.0.weight"].shape == (8, 2, 3, 3)
    conv = "layers.1.body.conv.0.weight"
    assert torch.equal(state[conv], sd[conv][:, 2:])


@pytest.mark.parametrize("change,field", [
    (lambda a: a.replace(layers=a.layers[:3] + (replace(a.layers[3], kernel=5),) + a.layers[4:]),
     "layers[3].kernel: 5 in the new arch, 3 in the old"),
    (lambda a: set_expansion(a, 0, 64), "layers[0].exp_ch"),
    (lambda a: a.replace(layers=a.layers[:-1]), "number of layers"),
    (lambda a: a.replace(num_classes=5), "num_classes"),
    (lambda a: a.replace(head=replace(a.head, kind="v2", hidden_ch=None)), "head.kind"),
    (lambda a: a.replace(head=replace(a.head, hidden_ch=128)), "head.hidden_ch"),
    (lambda a: a.replace(layers=(replace(a.layers[0], skip="none"),) + a.layers[1:]),
     "layers[0].skip"),
    (lambda a: a.replace(layers=(replace(a.layers[0], out_ch=8),) + a.layers[1:]),
     "layers[1].in_ch"),
])
def test_not_a_narrowing_names_the_field(change, field: str) -> None:
    arch = small_arch(SE_RULES["mid"])
    with pytest.raises(UserError, match=field.replace("[", r"\[").replace("]", r"\]")):
        inherit(arch, build_model(arch).state_dict(), change(arch))


def test_bad_state_dict_names_the_key() -> None:
    arch = small_arch(SE_RULES["mid"])
    new = with_width_multiplier(arch, 0.5)
    state = dict(build_model(arch).state_dict())
    key = "layers.4.body.se.reduce.bias"
    with pytest.raises(UserError, match=f"key '{key}' missing"):
        inherit(arch, {k: v for k, v in state.items() if k != key}, new)
    with pytest.raises(UserError, match=f"'{key}' has shape \\(3,\\)"):
        inherit(arch, {**state, key: torch.zeros(3)}, new)
    with pytest.raises(UserError, match="unexpected key 'module.extra'"):
        keep_indices(arch, {**state, "module.extra": torch.zeros(1)}, new)
