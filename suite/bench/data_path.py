"""Section 3: images/s of the device loader against torchvision's DataLoader over the same index plan."""
from __future__ import annotations

import torch

from suite import experiment as E
from suite.bench.common import BATCH, Plan, cut_epochs, dataset_exists, load_1min, median, timed


def synthetic_source(name: str, n_train: int, n_test: int):
    """Random uint8 images shaped and typed as `name` (mnist or cifar10), behind the same dataset
    classes and normalisation as the real one, so both loaders do the real work."""
    from suite import data as D

    gen = torch.Generator().manual_seed(0)
    hw = (28, 28) if name == "mnist" else (32, 32, 3)
    x = torch.randint(0, 256, (n_train, *hw), dtype=torch.uint8, generator=gen).numpy()
    vx = torch.randint(0, 256, (n_test, *hw), dtype=torch.uint8, generator=gen).numpy()
    y, vy = (torch.arange(n) % 10 for n in (n_train, n_test))

    def chw(a) -> torch.Tensor:
        t = torch.from_numpy(a)
        return t.unsqueeze(1).contiguous() if t.ndim == 3 else t.permute(0, 3, 1, 2).contiguous()

    from suite.datasets import dataset

    real = dataset(name)
    mean, std = real.mean, real.std
    spec = D.DataSpec(name, tuple(chw(x[:1]).shape[1:]), 10, n_train, n_test)
    return D.Source(spec, chw(x), y, chw(vx), vy, D.RGBImages(x, y.numpy()), D.RGBImages(vx, vy.numpy()),
                    mean, std, augmentable=name != "mnist")


def bench_data_path(name: str, plan: Plan, info: dict) -> dict:
    """images/s of the device loader and of the torchvision DataLoader over the same batches."""
    from suite import data as D

    candidates = ("mnist",) if name == "mnist" else ("cifar10", "cifar10_subset")
    found = [c for c in candidates if not plan.synthetic and dataset_exists(c, plan.data_root)]
    if found:
        dataset = found[0]
        from suite.datasets import dataset as registered

        source = registered(dataset).load(E.load_config(None, [f"data.name={dataset}", f"data.root={plan.data_root}"],
                                                        "dense").data)
    else:
        n = plan.data_batches * BATCH
        dataset, source = f"synthetic {name}", synthetic_source(name, n, BATCH)
    kw = dict(batch_size=BATCH, seed=0, rank=0, world_size=1, device=plan.device, augment=True)
    loaders = {"device": D.DeviceData(source, **kw)}
    for w in plan.workers:
        loaders[f"torchvision:{w}"] = D.TorchvisionData(source, num_workers=w, **kw)
    batches = min(cut_epochs(d, plan.data_batches) for d in loaders.values())

    def drain(data, epoch: int) -> None:
        for _x, _y in data.train_batches(epoch):
            pass

    rates: dict[str, float] = {}
    for key, data in loaders.items():
        drain(data, 0)  # warm-up
        repeats = plan.repeats if key == "device" else max(2, plan.repeats // 2)
        seconds = [timed(lambda: drain(data, 1 + rep), plan.device) for rep in range(repeats)]
        rates[key] = batches * BATCH / median(seconds)
    by_workers = {key.split(":")[1]: rate for key, rate in rates.items() if key != "device"}
    best = max(by_workers, key=by_workers.get)
    return {"machine": info["label"], "load": load_1min(), "dataset": dataset,
            "augment": loaders["device"].augment, "batches": batches, "images": batches * BATCH,
            "device_images_per_s": rates["device"], "torchvision_images_per_s": by_workers[best],
            "torchvision_workers": int(best), "torchvision_by_workers": by_workers,
            "speedup": rates["device"] / by_workers[best]}
