"""A frontal chest radiograph drawn from a sampled patient: body, lungs, heart, mediastinum,
diaphragm domes, ribs, clavicles, spine. Coordinates are anatomical, in [0, 1] (x to the
image right = the patient's left, as radiographs are displayed; y down).

Images are float32 in [0, 1], bright = dense (bone, soft tissue), dark = air.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def smooth_noise(rng: np.random.Generator, size: int, scale: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: random values on a coarse grid, bilinearly upsampled."""
    n = max(2, size // scale + 2)
    coarse = rng.uniform(-1, 1, (n, n)).astype(np.float32)
    pos = np.linspace(0, n - 1.001, size, dtype=np.float32)
    i = pos.astype(int)
    f = pos - i
    rows = coarse[i] * (1 - f)[:, None] + coarse[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def soft(mask_value: np.ndarray, width: float) -> np.ndarray:
    """A soft step: 1 inside (value < 0), 0 outside, blended over ``width``."""
    return np.clip(0.5 - mask_value / max(width, 1e-6), 0.0, 1.0)


@dataclass
class Patient:
    """The sampled geometry of one patient (all in anatomical [0, 1] coordinates)."""

    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)
    rotation: float = 0.0  # degrees
    heart_width: float = 0.17  # half-width of the cardiac shadow
    lung_height: float = 0.30
    dome_right: float = 0.70  # y of the right hemidiaphragm dome (image left)
    dome_left: float = 0.73
    exposure: float = 1.0
    gamma: float = 1.0
    noise: float = 0.02
    lucency: float = 0.0  # extra lung darkness (hyperinflation)
    markings: float = 1.0  # strength of lung markings
    extra: dict = field(default_factory=dict)

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Patient:
        return cls(
            scale=float(rng.uniform(0.92, 1.06)),
            shift=(float(rng.normal(0, 0.015)), float(rng.normal(0, 0.015))),
            rotation=float(rng.normal(0, 2.5)),
            heart_width=float(rng.uniform(0.16, 0.185)),
            lung_height=float(rng.uniform(0.27, 0.32)),
            dome_right=float(rng.uniform(0.68, 0.72)),
            dome_left=float(rng.uniform(0.71, 0.75)),
            exposure=float(rng.uniform(0.85, 1.15)),
            gamma=float(rng.uniform(0.85, 1.2)),
            noise=float(rng.uniform(0.01, 0.035)),
        )

    @property
    def thorax_half_width(self) -> float:
        return 0.40

    @property
    def ctr(self) -> float:
        """Cardiothoracic ratio (cardiac width / thoracic width)."""
        return self.heart_width / self.thorax_half_width


class Canvas:
    """Coordinate grids of the patient (after rotation, scale and shift) and the layers."""

    def __init__(self, patient: Patient, size: int) -> None:
        self.patient, self.size = patient, size
        v = (np.arange(size, dtype=np.float32) + 0.5) / size
        x, y = np.meshgrid(v, v)
        th = np.deg2rad(patient.rotation)
        cx, cy = 0.5 + patient.shift[0], 0.5 + patient.shift[1]
        xr = (x - cx) * np.cos(th) + (y - cy) * np.sin(th)
        yr = -(x - cx) * np.sin(th) + (y - cy) * np.cos(th)
        self.x = xr / patient.scale + 0.5
        self.y = yr / patient.scale + 0.5
        self.pixel = 1.0 / (size * patient.scale)  # one pixel in anatomical units
        self._domes: dict[str, np.ndarray] = {}

    # ---------------------------------------------------------------- anatomy regions
    def dome(self, side: str) -> np.ndarray:
        """y of the hemidiaphragm under each x (a parabola per side; computed once per side)."""
        if side not in self._domes:
            p = self.patient
            top = p.dome_right if side == "right" else p.dome_left
            center = 0.32 if side == "right" else 0.68
            dome = top + 3.0 * (self.x - center) ** 2
            dome.flags.writeable = False  # shared by every caller: read-only
            self._domes[side] = dome
        return self._domes[side]

    def lung_field(self, side: str) -> np.ndarray:
        """Signed distance-like field: < 0 inside the lung."""
        p = self.patient
        cx = 0.31 if side == "right" else 0.69
        rx = 0.165
        top = 0.72 - 2 * p.lung_height  # apex
        cy = (top + self.dome(side)) / 2
        ry = (self.dome(side) - top) / 2 + 0.02
        ellipse = ((self.x - cx) / rx) ** 2 + ((self.y - cy) / ry) ** 2 - 1.0
        below_dome = (self.y - self.dome(side)) * 12
        return np.maximum(ellipse, below_dome)

    def heart_field(self) -> np.ndarray:
        p = self.patient
        cx, cy = 0.535 + 0.25 * (p.heart_width - 0.17), 0.60
        return ((self.x - cx) / p.heart_width) ** 2 + ((self.y - cy) / 0.115) ** 2 - 1.0

    def mediastinum_field(self) -> np.ndarray:
        return np.maximum(np.abs(self.x - 0.5) - 0.055, np.maximum(0.08 - self.y, self.y - 0.62))

    def body_field(self) -> np.ndarray:
        return ((self.x - 0.5) / 0.46) ** 2 + ((self.y - 0.6) / 0.58) ** 2 - 1.0


def render_anatomy(canvas: Canvas, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Base radiograph layers: ``density`` (float, 0 = air) plus region masks."""
    p, s = canvas.patient, canvas.size
    x, y = canvas.x, canvas.y
    px = canvas.pixel
    body = soft(canvas.body_field(), 0.02)
    density = 0.08 + 0.42 * body
    # abdomen below the domes
    below = y - np.where(x < 0.5, canvas.dome("right"), canvas.dome("left"))
    density += 0.12 * soft(-below, 0.02) * body
    lungs = {side: soft(canvas.lung_field(side), 0.06) for side in ("right", "left")}
    lung = np.clip(lungs["right"] + lungs["left"], 0, 1)
    texture = 0.5 * smooth_noise(rng, s, 6) + 0.5 * smooth_noise(rng, s, 14)
    density -= lung * (0.30 + p.lucency - 0.03 * p.markings * texture)
    # vascular markings: faint branching streaks radiating from the hila
    for side, hx in (("right", 0.42), ("left", 0.58)):
        angle = np.arctan2(y - 0.48, x - hx)
        streak = np.cos(angle * rng.integers(9, 14) + rng.uniform(0, 6.28)) ** 8
        r = np.hypot(x - hx, y - 0.48)
        density += lungs[side] * p.markings * 0.06 * streak * np.exp(-r / 0.12)
    heart = soft(canvas.heart_field(), 0.05)
    mediastinum = soft(canvas.mediastinum_field(), 0.01)
    density = np.maximum(density, 0.55 * np.maximum(heart, mediastinum) + density * (1 - np.maximum(heart, mediastinum)))
    # trachea (air column) and spine
    trachea = soft(np.maximum(np.abs(x - 0.5) - 0.014, np.maximum(0.02 - y, y - 0.36)), 0.006)
    density -= 0.18 * trachea
    density += 0.06 * soft(np.abs(x - 0.5) - 0.03, 0.01) * (y > 0.05)
    # ribs: posterior arcs on each side; clavicles
    # (the terms that do not change with the rib are computed once: the same arithmetic, in the same
    # order, as one expression per rib, so the pixels are identical)
    ribs = np.zeros_like(density)
    dx = x - 0.5
    bow = 0.9 * dx ** 2
    for sign in (-1, 1):  # right, left
        tilt = 0.05 * sign * dx
        mask = (sign * dx > 0.02) & (sign * dx < 0.43)
        for k in range(9):
            y0 = 0.17 + k * 0.062
            band = np.abs(y - (y0 + bow - tilt)) - 0.011
            ribs = np.maximum(ribs, soft(band, 3 * px) * mask)
    for sign in (-1, 1):
        t = np.clip(sign * (x - 0.5) / 0.32, 0, 1)
        clav = np.abs(y - (0.165 - 0.05 * t + 0.06 * t ** 2)) - 0.012
        ribs = np.maximum(ribs, 1.4 * soft(clav, 3 * px) * (sign * (x - 0.5) > 0.04) * (sign * (x - 0.5) < 0.34))
    density += 0.09 * ribs
    return {"density": density, "lung_right": lungs["right"], "lung_left": lungs["left"],
            "heart": heart, "ribs": ribs}


def to_image(density: np.ndarray, patient: Patient, rng: np.random.Generator) -> np.ndarray:
    """Exposure, gamma and noise -> a float image in [0, 1]."""
    img = np.clip(density * patient.exposure, 0, 1) ** patient.gamma
    img = img + rng.normal(0, patient.noise, img.shape).astype(np.float32)
    return np.clip(img, 0, 1).astype(np.float32)
