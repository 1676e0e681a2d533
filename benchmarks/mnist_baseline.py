"""Speed baseline: the recipe of PyTorch's well-known MNIST example, rewritten here.

Its network (conv 3x3 32 -> conv 3x3 64 -> max-pool -> dropout 0.25 -> dense 128 -> dropout 0.5 ->
10), Adadelta at lr 1.0 with the learning rate times 0.7 after every epoch, batch 64, float32, and
torchvision per-image transforms (ToTensor, Normalize) behind a DataLoader; the test set is
scored after every epoch. Used by benchmarks/speed.py as the "(a)" side of each comparison.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms


class ExampleNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 1, 28, 28]
        x = F.relu(self.conv1(x))  # [B, 32, 26, 26]
        x = F.relu(self.conv2(x))  # [B, 64, 24, 24]
        x = self.dropout1(F.max_pool2d(x, 2))  # [B, 64, 12, 12]
        x = self.dropout2(F.relu(self.fc1(torch.flatten(x, 1))))  # [B, 128]
        return F.log_softmax(self.fc2(x), dim=1)


class PerImageDataset(Dataset):
    """One PIL image per item, transformed on every access, as a torchvision dataset does."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform) -> None:
        self.images, self.labels, self.transform = images.numpy(), labels.tolist(), transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images[index, 0], mode="L")
        return self.transform(image), self.labels[index]


@dataclass
class BaselineResult:
    epochs: list[dict] = field(default_factory=list)  # per epoch: seconds, images/s, test acc


def run_baseline(dataset, epochs: int, seed: int = 1, log=print) -> BaselineResult:
    """Train and test the example's recipe on an ImageDataset (MNIST), timing every epoch."""
    torch.manual_seed(seed)
    transform = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
    )
    train_set = PerImageDataset(dataset.train_images, dataset.train_labels, transform)
    test_set = PerImageDataset(dataset.test_images, dataset.test_labels, transform)
    train_loader = DataLoader(train_set, batch_size=64, shuffle=True)
    test_loader = DataLoader(test_set, batch_size=1000)
    model = ExampleNet()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    result = BaselineResult()
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        epoch_start = time.perf_counter()
        for images, labels in train_loader:
            optimizer.zero_grad()
            loss = F.nll_loss(model(images), labels)
            loss.backward()
            optimizer.step()
        train_seconds = time.perf_counter() - epoch_start
        scheduler.step()
        correct = 0
        model.eval()
        with torch.no_grad():
            for images, labels in test_loader:
                correct += int((model(images).argmax(1) == labels).sum())
        row = {
            "epoch": epoch,
            "train_seconds": round(train_seconds, 2),
            "train_images_per_second": round(len(train_set) / train_seconds, 1),
            "test_accuracy": correct / len(test_set),
            "wall_seconds": round(time.perf_counter() - start, 2),
        }
        result.epochs.append(row)
        log(f"baseline epoch {epoch}: {row}")
    return result
