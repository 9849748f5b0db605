"""``alexnet-course bench``: the seed notebook's input pipeline against the course's.

Both train the same model (lesson 03's AlexNet) on the same device for the same number of
steps, in the same run:

* seed: a ``DataLoader`` with 2 workers over PIL images, ``Resize(224)``, ``ToTensor()``,
  ``Normalize(0.5, 0.5)``, fp32 — what the seed notebook did;
* reference: uint8 batches kept on the device, resized and normalised there as whole
  batches (:class:`alexnet_course.data.torch_pipeline.TorchBatches`), bf16 autocast where
  the device supports it, ``channels_last`` on CUDA.

It prints training images/second for both and their ratio.
"""

from __future__ import annotations

import time


def _seed_loader(images, labels, batch_size: int, size: int):
    import torch
    from PIL import Image
    from torchvision import transforms

    tf = transforms.Compose([transforms.Resize(size), transforms.ToTensor(),
                             transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])  # fmt: skip

    class PILDataset(torch.utils.data.Dataset):
        def __len__(self):
            return len(labels)

        def __getitem__(self, i):
            return tf(Image.fromarray(images[i])), int(labels[i])

    return torch.utils.data.DataLoader(PILDataset(), batch_size=batch_size, shuffle=True,
                                       num_workers=2, drop_last=True)  # fmt: skip


def _time_steps(model, batches, steps: int, device, bf16: bool) -> float:
    """Seconds for ``steps`` training steps (after one warm-up step), data loading included."""
    import torch

    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    it = iter(batches)

    def step():
        x, y = next(it)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def run_bench(data, *, impl: str, steps: int = 5, batch_size: int = 32, size: int = 224,
              echo=print) -> dict:  # fmt: skip
    """Measure both pipelines; returns images/second for each and the ratio."""
    import torch

    from alexnet_course.data import CIFAR10_MEAN, CIFAR10_STD
    from alexnet_course.data.torch_pipeline import TorchBatches
    from alexnet_course.device import pick_device, seed_everything
    from alexnet_course.grading.learner import load_lesson_module

    device = pick_device()
    alexnet = load_lesson_module("03_torch_scratch", "alexnet", impl)
    n = (steps + 1) * batch_size
    images, labels = data.train.images[:n], data.train.labels[:n]
    if len(labels) < n:
        raise ValueError(f"bench needs {n} training images, the data has {len(labels)}")
    seed_everything(0)
    model = alexnet.AlexNet(num_classes=data.num_classes, norm="batch").to(device)
    seed_t = _time_steps(model, _seed_loader(images, labels, batch_size, size), steps, device,
                         bf16=False)  # fmt: skip
    from alexnet_course.data.cifar10 import Split

    cl = device.type == "cuda"
    ref_model = alexnet.AlexNet(num_classes=data.num_classes, norm="batch").to(device)
    if cl:
        ref_model = ref_model.to(memory_format=torch.channels_last)
    batches = TorchBatches(Split(images, labels), batch_size=batch_size, mean=CIFAR10_MEAN,
                           std=CIFAR10_STD, size=size, train=True, device=device,
                           channels_last=cl, drop_last=True)  # fmt: skip
    from alexnet_course.compare.settings import bf16_supported

    bf16 = bf16_supported(device)
    ref_t = _time_steps(ref_model, batches, steps, device, bf16=bf16)
    seed_ips, ref_ips = steps * batch_size / seed_t, steps * batch_size / ref_t
    result = {"device": str(device), "steps": steps, "batch_size": batch_size, "size": size,
              "seed_images_per_s": seed_ips, "reference_images_per_s": ref_ips,
              "reference_precision": "bf16 autocast" if bf16 else "fp32",
              "ratio": ref_ips / seed_ips}  # fmt: skip
    echo(f"device {device}, {steps} training steps of batch {batch_size} at {size} px, "
         f"lesson 03's AlexNet (norm='batch')")
    echo(f"  seed pipeline (PIL Resize + ToTensor + Normalize, DataLoader 2 workers, fp32): "
         f"{seed_ips:.1f} images/s")  # fmt: skip
    echo(f"  reference pipeline (batches on the device, {result['reference_precision']}): "
         f"{ref_ips:.1f} images/s")  # fmt: skip
    echo(f"  ratio: {result['ratio']:.2f}x")
    return result
