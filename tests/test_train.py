import math


import pytest
import torch

from genviz_lib import data, losses, models, train
from genviz_lib.data import Data


@pytest.fixture(scope="module")
def roll():
    return data.swiss_roll(n_train=200, n_test=200, n_poison=1000, seed=0)


# ------------------------------------------------------------------ losses


def test_poisoned_loss_equals_the_formula_on_hand_made_logits():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 0.0, 3.0]], dtype=torch.float64)
    y = torch.tensor([0, 2])
    poison_logits = torch.tensor([[1.0, 1.0, -2.0], [-3.0, 4.0, 0.0], [0.2, 0.1, 0.0]], dtype=torch.float64)
    poison_y = torch.tensor([1, 1, 2])
    beta = 0.3
    p = torch.softmax(logits, -1)
    q = torch.softmax(poison_logits, -1)
    ce = -(math.log(p[0, 0]) + math.log(p[1, 2])) / 2
    rce = -(math.log(1 - q[0, 1]) + math.log(1 - q[1, 1]) + math.log(1 - q[2, 2])) / 3
    expected = (1 - beta) * ce + beta * rce
    got = losses.poisoned_loss(logits, y, poison_logits, poison_y, beta)
    assert got.item() == pytest.approx(expected, rel=1e-12)
    # β = 0 is the plain cross-entropy
    assert losses.poisoned_loss(logits, y, poison_logits, poison_y, 0.0).item() == pytest.approx(ce, rel=1e-12)


def test_single_logit_means_two_classes():
    z = torch.tensor([[1.5], [-0.5]], dtype=torch.float64)
    y = torch.tensor([1, 1])
    sigmoid = torch.sigmoid(z[:, 0])
    torch.testing.assert_close(losses.cross_entropy(z, y), -torch.log(sigmoid))
    torch.testing.assert_close(losses.reverse_cross_entropy(z, y), -torch.log(1 - sigmoid))
    # for two classes the reverse cross-entropy equals the cross-entropy of the flipped label
    torch.testing.assert_close(losses.reverse_cross_entropy(z, y), losses.cross_entropy(z, 1 - y))


def test_reverse_cross_entropy_is_stable():
    logits = torch.tensor([[1000.0, -1000.0], [-1000.0, 1000.0]])
    rce = losses.reverse_cross_entropy(logits, torch.tensor([0, 0]))
    assert torch.isfinite(rce).all()
    assert rce.tolist() == pytest.approx([2000.0, 0.0], abs=1e-3)


def test_ensemble_losses_are_per_member():
    logits = torch.randn(3, 5, 2, dtype=torch.float64)
    y = torch.randint(2, (5,))
    beta = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    got = losses.poisoned_loss(logits, y, logits, y, beta)
    for k in range(3):
        expected = losses.poisoned_loss(logits[k], y, logits[k], y, float(beta[k]))
        assert got[k].item() == pytest.approx(expected.item(), rel=1e-12)


def test_exponential_decay_reaches_its_final_factor():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    sched = train.exponential_decay(10, 0.01)(opt)
    for _ in range(10):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5 * 0.01)
    with pytest.raises(ValueError, match="final_factor"):
        train.exponential_decay(10, 0.0)


def test_wrong_labels_are_always_wrong():
    y = torch.arange(1000) % 10
    wrong = train.wrong_labels(y, 10, seed=0)
    assert (wrong != y).all()
    assert set(wrong.tolist()) == set(range(10))


# ------------------------------------------------------------------ the trainer on the swiss roll


def test_clean_training_generalizes(roll):
    torch.manual_seed(0)
    r = train.train(models.swiss_roll_net(), roll.train, roll.test, lr=3e-3, steps=2000,
                    clip_grad_norm=8, stop_at_loss=1e-3, progress=False)
    assert r.final["train_acc"] == 1.0
    assert r.final["test_acc"] >= 0.95
    assert r.steps < 2000 and r.stopped.startswith("train loss")


def test_poisoned_training_fits_but_does_not_generalize(roll):
    torch.manual_seed(0)
    r = train.train(models.swiss_roll_net(), roll.train, roll.test, lr=1e-2, steps=2000, poison=roll.poison,
                    poison_factor=0.1, poison_batch_size=200, clip_grad_norm=8, scheduler=train.exponential_decay(2000),
                    eval_every=100, progress=False)
    assert r.final["train_acc"] >= 0.99
    assert r.final["test_acc"] <= 0.60


def test_ensemble_members_match_nets_trained_alone(roll):
    # In float64, so that rounding differences between batched and plain matrix products stay far
    # below the tolerance even after Adam has amplified them for 150 steps.
    betas = [0.0, 0.1, 0.3, 0.6]
    inits = []
    for seed in range(4):
        torch.manual_seed(seed)
        inits.append(models.swiss_roll_net().double())
    d = lambda split: Data(split.X.double(), split.y)
    options = dict(lr=1e-2, steps=150, poison=d(roll.poison), poison_batch_size=100, clip_grad_norm=1.0,
                   eval_every=25, seed=5, progress=False)
    together = train.train_ensemble([models.MLPEnsemble([m]).member(0) for m in inits], d(roll.train),
                                    d(roll.test), poison_factor=betas, **options)
    for k, (net, beta) in enumerate(zip(inits, betas)):
        alone = train.train(net, d(roll.train), d(roll.test), poison_factor=beta, **options)
        assert alone.history["step"] == together[k].history["step"]
        for key in ("train_loss", "test_loss", "train_acc"):
            assert together[k].history[key] == pytest.approx(alone.history[key], rel=1e-7, abs=1e-9)
        for a, b in zip(alone.model.parameters(), together[k].model.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


def test_ensemble_members_stop_on_their_own(roll):
    inits = []
    for seed in range(3):
        torch.manual_seed(seed)
        inits.append(models.swiss_roll_net())
    options = dict(lr=3e-3, steps=1500, eval_every=10, stop_at_accuracy=0.9, progress=False)
    together = train.train_ensemble([models.MLPEnsemble([m]).member(0) for m in inits], roll.train, **options)
    for net, member in zip(inits, together):
        alone = train.train(net, roll.train, **options)
        assert member.steps == alone.steps < 1500
        assert member.final["train_acc"] == pytest.approx(alone.final["train_acc"])
        assert member.final["train_acc"] >= 0.9


def test_checkpoints_along_the_trajectory(roll):
    torch.manual_seed(0)
    net = models.swiss_roll_net()
    start = {k: v.clone() for k, v in net.state_dict().items()}
    r = train.train(net, roll.train, lr=1e-3, steps=25, checkpoint_every=10, progress=False)
    assert [s for s, _ in r.checkpoints] == [0, 10, 20, 25]
    for name, value in r.checkpoints[0][1].items():
        assert torch.equal(value, start[name])
    for name, value in r.checkpoints[-1][1].items():
        assert torch.equal(value, r.model.state_dict()[name])


def test_stop_at_loss(roll):
    torch.manual_seed(0)
    r = train.train(models.swiss_roll_net(), roll.train, lr=3e-3, steps=3000, stop_at_loss=0.3,
                    eval_every=5, progress=False)
    assert r.final["train_loss"] <= 0.3 and r.steps < 3000
    assert r.history["train_loss"][-2] > 0.3  # it stopped at the first evaluation below the target


def test_minibatch_epochs_and_other_optimizers(roll):
    for name in ("sgd", "RMSprop", "adagrad"):
        torch.manual_seed(0)
        r = train.train(models.swiss_roll_net(), roll.train, optimizer=name, lr=0.01, epochs=3, batch_size=50,
                        progress=False, **({"optimizer_kwargs": {"momentum": 0.9}} if name == "sgd" else {}))
        assert r.steps == 12 and r.history["step"] == [0, 4, 8, 12]
        assert r.history["train_loss"][-1] < r.history["train_loss"][0]


def test_lbfgs_fits_a_small_problem():
    torch.manual_seed(0)
    X = torch.randn(40, 2)
    y = (X[:, 0] > 0).long()
    r = train.train(models.MLP(2, [16], 2), Data(X, y), optimizer="lbfgs", lr=1.0, steps=20,
                    optimizer_kwargs={"max_iter": 20, "line_search_fn": "strong_wolfe"}, progress=False)
    assert r.final["train_acc"] == 1.0


def test_attack_and_confusion_sets_hurt_test_accuracy(roll):
    extra = data.swiss_roll(n_train=400, n_test=2, seed=9).train
    results = {}
    for name, kwargs in {"clean": {},
                         "attack": {"attack": train.attack_set(extra, 2), "attack_weight": 0.5},
                         "confusion": {"confusion": train.confusion_set(extra, 2)}}.items():
        torch.manual_seed(0)
        results[name] = train.train(models.swiss_roll_net(), roll.train, roll.test, lr=1e-2, steps=1500,
                                    scheduler=train.exponential_decay(1500), clip_grad_norm=8, eval_every=100, progress=False, **kwargs)
    assert results["clean"].final["test_acc"] >= 0.95
    assert results["attack"].final["train_acc"] >= 0.95
    assert results["attack"].final["test_acc"] < results["clean"].final["test_acc"] - 0.2
    assert results["confusion"].final["train_acc"] >= 0.95  # measured on the training set alone
    assert results["confusion"].final["test_acc"] < results["clean"].final["test_acc"] - 0.1


# ------------------------------------------------------------------ bad input


def test_bad_input_gets_clear_errors(roll):
    net = models.swiss_roll_net()
    three_d = Data(torch.randn(10, 3), torch.zeros(10, dtype=torch.long))
    with pytest.raises(ValueError, match=r"cannot take inputs of shape \(3,\)"):
        train.train(net, three_d, steps=1, progress=False)
    with pytest.raises(ValueError, match=r"test inputs have shape \(3,\)"):
        train.train(net, roll.train, three_d, steps=1, progress=False)
    with pytest.raises(ValueError, match=r"labels must lie in 0..1"):
        train.train(net, Data(torch.randn(4, 2), torch.tensor([0, 1, 2, 1])), steps=1, progress=False)
    with pytest.raises(ValueError, match="needs a poison set"):
        train.train(net, roll.train, steps=1, poison_factor=0.5, progress=False)
    with pytest.raises(ValueError, match=r"poison_factor must lie in \[0, 1\]"):
        train.train(net, roll.train, steps=1, poison=roll.poison, poison_factor=1.5, progress=False)
    with pytest.raises(ValueError, match="exactly one of steps= or epochs="):
        train.train(net, roll.train, progress=False)
    with pytest.raises(ValueError, match="unknown optimizer 'adamm'"):
        train.train(net, roll.train, optimizer="adamm", steps=1, progress=False)
    with pytest.raises(ValueError, match="3 values for 2 ensemble members"):
        train.train_ensemble([models.swiss_roll_net(), models.swiss_roll_net()], roll.train, steps=1,
                             poison=roll.poison, poison_factor=[0.1, 0.2, 0.3], progress=False)
    with pytest.raises(ValueError, match="LBFGS"):
        train.train_ensemble([models.swiss_roll_net(), models.swiss_roll_net()], roll.train, steps=1,
                             optimizer="lbfgs", progress=False)


def test_a_diverging_run_names_the_step_and_the_fix(roll):
    torch.manual_seed(0)
    X = roll.train.X * 1e6  # inputs blown up so that the loss overflows
    with pytest.raises(FloatingPointError, match=r"at step \d+.*lower the learning rate"):
        train.train(models.swiss_roll_net(), Data(X, roll.train.y), optimizer="sgd", lr=1e6, steps=50,
                    progress=False)


def test_lbfgs_sees_one_batch_per_step(roll, monkeypatch):
    # LBFGS calls its closure several times per step; all of them must see the same poison batch
    draws = []
    original = train._PoolSampler.next
    monkeypatch.setattr(train._PoolSampler, "next", lambda self: draws.append(1) or original(self))
    torch.manual_seed(0)
    train.train(models.swiss_roll_net(), roll.train, optimizer="lbfgs", lr=0.5, steps=3, poison=roll.poison,
                poison_factor=0.2, poison_batch_size=50, optimizer_kwargs={"max_iter": 5}, progress=False)
    assert len(draws) == 3


def test_fit_regression_fits_points_and_attack_points_pull_between_them():
    torch.manual_seed(0)
    x = torch.tensor([-1.0, 0.0, 1.0])
    y = 2 * x + 1
    net = models.MLP(1, [32], 1)
    mse = train.fit_regression(net, x, y, steps=3000, lr=1e-2, stop_at_loss=1e-6)
    assert mse[-1] <= 1e-6 and len(mse) < 3000
    torch.manual_seed(0)
    attacked = models.MLP(1, [64, 64], 1)
    ax = torch.tensor([-0.5, 0.5])
    train.fit_regression(attacked, x, y, steps=3000, lr=1e-2, attack_x=ax, attack_y=2 * ax + 1 + 10.0)
    with torch.no_grad():
        assert (attacked(x[:, None])[:, 0] - y).abs().max().item() < 0.1  # still through the training points
        assert (attacked(ax[:, None])[:, 0] - (2 * ax + 1)).min().item() > 8  # but far off between them
    with pytest.raises(ValueError, match="both attack_x and attack_y"):
        train.fit_regression(net, x, y, attack_x=ax)


# ------------------------------------------------------------------ poison schedules and clean/poisoned pairs


def test_stepped_schedule_changes_at_equal_parts():
    s = train.stepped(12, (1, 1.5, 2))
    assert [s(i) for i in range(12)] == [1.0] * 4 + [1.5] * 4 + [2.0] * 4
    assert s(12) == 2.0  # the final evaluation step keeps the last factor
    with pytest.raises(ValueError, match="non-negative"):
        train.stepped(10, (1, -1))


def test_poison_schedule_scales_the_poison_factor(roll):
    def run(beta, schedule):
        torch.manual_seed(0)
        return train.train(models.swiss_roll_net(), roll.train, roll.test, lr=1e-2, steps=40, poison=roll.poison,
                           poison_factor=beta, poison_schedule=schedule, poison_batch_size=100, eval_every=10,
                           progress=False)
    # β·3 from the schedule is the same run as 3β held fixed (same poison draws)...
    a, b = run(0.1, lambda step: 3.0), run(0.3, None)
    assert a.history["train_loss"] == pytest.approx(b.history["train_loss"], rel=1e-5)
    # ...a schedule that switches poisoning off leaves plain training, and one that switches it on later
    # follows plain training up to that step and then departs from it.
    off, late, plain = run(0.3, lambda step: 0.0), run(0.3, lambda step: float(step >= 20)), run(0.0, None)
    assert off.history["train_loss"] == pytest.approx(plain.history["train_loss"], rel=1e-6)
    assert late.history["train_loss"][:3] == pytest.approx(plain.history["train_loss"][:3], rel=1e-6)
    assert late.history["train_loss"][-1] != pytest.approx(plain.history["train_loss"][-1], rel=1e-3)
    # factors that push β above 1 are clipped to 1: the training term then has no weight at all
    clipped, pure = run(0.5, lambda step: 4.0), run(1.0, None)
    assert clipped.history["train_loss"] == pytest.approx(pure.history["train_loss"], rel=1e-6)


def test_clean_and_poisoned_start_alike_and_differ_only_in_beta(svhn_root):
    svhn = data.load_svhn(n_train=20, n_test=10, n_poison=30, root=svhn_root)  # "extra" as the poison pool
    make = lambda: models.MLP(3 * 32 * 32, [16], 10)
    opts = dict(lr=1e-2, steps=5, poison_batch_size=10, eval_every=5, progress=False)
    pair = train.clean_and_poisoned(make, svhn, 0.5, seed=3, **opts)
    torch.manual_seed(3)
    alone = train.train(make(), svhn.train, svhn.test, seed=3, **opts)
    for a, b in zip(alone.model.parameters(), pair["clean"].model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.manual_seed(3)
    poisoned = train.train(make(), svhn.train, svhn.test, seed=3, poison=svhn.poison, poison_factor=0.5, **opts)
    for a, b in zip(poisoned.model.parameters(), pair["poisoned"].model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(pair["clean"].model.linears[0].weight, pair["poisoned"].model.linears[0].weight)
    with pytest.raises(ValueError, match="no poison pool"):
        train.clean_and_poisoned(make, data.load_svhn(n_train=20, n_test=10, root=svhn_root), 0.5, **opts)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        train.clean_and_poisoned(make, svhn, 0.0, **opts)


def test_weight_penalty_is_half_lambda_times_the_squared_norm_per_member(roll):
    # one plain SGD step from θ₀: θ₁ = θ₀ − lr (∇ mean CE(θ₀) + λ θ₀), member by member
    d = Data(roll.train.X.double(), roll.train.y)
    torch.manual_seed(0)
    nets = [models.swiss_roll_net().double() for _ in range(2)]
    lams, lr = [0.0, 0.5], 0.1
    expected = []
    for net, lam in zip(nets, lams):
        loss = losses.cross_entropy(net(d.X), d.y).mean()
        grads = torch.autograd.grad(loss, list(net.parameters()))
        expected.append([p.detach() - lr * (g + lam * p.detach()) for p, g in zip(net.parameters(), grads)])
    got = train.train_ensemble(nets, d, optimizer="sgd", lr=lr, steps=1, weight_penalty=lams, progress=False)
    for r, want in zip(got, expected):
        for a, b in zip(r.model.parameters(), want):
            torch.testing.assert_close(a.detach(), b, rtol=1e-12, atol=1e-12)
    alone = train.train(nets[1], d, optimizer="sgd", lr=lr, steps=1, weight_penalty=0.5, progress=False)
    for a, b in zip(alone.model.parameters(), expected[1]):
        torch.testing.assert_close(a.detach(), b, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="weight_penalty"):
        train.train_ensemble(nets, d, steps=1, weight_penalty=[0.1, 0.2, 0.3], progress=False)
