"""Findings of the synthetic world: each draws a distinct signature into the density image at
named positions and returns its pixel mask.

Sides are the patient's: "right" is the image left. Zones: upper / mid / lower lung.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from medklip.data.synthetic.anatomy import Canvas, Patient, smooth_noise, soft

ZONE_Y = {"upper": (0.24, 0.38), "mid": (0.38, 0.52), "lower": (0.52, 0.66)}
LUNG_X = {"right": 0.31, "left": 0.69}
SIZES = ("small", "moderate", "large")
BILATERAL_OPACITY = 0.35
"""Share of ``opacity`` findings drawn in both lungs."""


@dataclass
class Finding:
    """One finding instance: what it is, where (position vocabulary names), its mask."""

    kind: str
    side: str | None = None
    zone: str | None = None
    size: str | None = None
    positions: list[str] = field(default_factory=list)
    mask: np.ndarray | None = None
    detail: dict = field(default_factory=dict)


def _zone_center(side: str, zone: str, rng: np.random.Generator) -> tuple[float, float]:
    y0, y1 = ZONE_Y[zone]
    lateral = 1 if side == "left" else -1
    return LUNG_X[side] + lateral * rng.uniform(-0.03, 0.05), rng.uniform(y0 + 0.02, y1 - 0.02)


def _lung_mask(layers: dict, side: str) -> np.ndarray:
    return layers[f"lung_{side}"]


def _blob(canvas: Canvas, cx: float, cy: float, rx: float, ry: float, rng: np.random.Generator,
          roughness: float = 0.35) -> np.ndarray:
    noise = smooth_noise(rng, canvas.size, max(3, int(canvas.size * rx / 2)))
    field_ = ((canvas.x - cx) / rx) ** 2 + ((canvas.y - cy) / ry) ** 2 - 1.0 + roughness * noise
    return soft(field_, 0.25)


# ------------------------------------------------------------------- global findings
def prepare_cardiomegaly(patient: Patient, rng: np.random.Generator) -> Finding:
    patient.heart_width = float(rng.uniform(0.215, 0.25))
    return Finding("cardiomegaly", positions=["heart_size"], size=rng.choice(["mild", "moderate", "marked"]))


def prepare_hyperinflation(patient: Patient, rng: np.random.Generator) -> Finding:
    patient.lung_height += 0.035
    patient.dome_right += 0.05
    patient.dome_left += 0.05
    patient.lucency = 0.07
    patient.markings = 0.4
    return Finding("hyperinflation", positions=["lung_volumes"], detail={"emphysema": bool(rng.random() < 0.5)})


# -------------------------------------------------------------------- local findings
def draw_effusion(canvas: Canvas, layers: dict, density: np.ndarray, rng: np.random.Generator) -> Finding:
    side = rng.choice(["right", "left"])
    size = rng.choice(SIZES, p=[0.45, 0.35, 0.2])
    height = {"small": 0.075, "moderate": 0.12, "large": 0.18}[size]
    top = canvas.patient.dome_right if side == "right" else canvas.patient.dome_left
    lateral = np.clip((canvas.x - 0.5) * (1 if side == "left" else -1) / 0.4, 0, 1)
    level = top + 0.05 - height - 0.06 * lateral ** 2  # meniscus: higher laterally
    region = soft(canvas.lung_field(side), 0.08) * soft(level - canvas.y, 0.012)
    density += 0.36 * region
    return Finding("effusion", side=side, size=size, positions=[f"{side}_pleural"], mask=region > 0.5)


def _airspace(kind: str, contrast: float, canvas: Canvas, layers: dict, density: np.ndarray,
              rng: np.random.Generator, zones: tuple[str, ...] = ("upper", "mid", "lower")) -> Finding:
    side = rng.choice(["right", "left"])
    zone = rng.choice(zones)
    cx, cy = _zone_center(side, zone, rng)
    lung = _lung_mask(layers, side)
    extra: list[str] = []
    if kind == "opacity":  # faint hazy patch, in both lungs in a third of the cases (as real opacities often are)
        region = _blob(canvas, cx, cy, rng.uniform(0.07, 0.1), rng.uniform(0.06, 0.08), rng, 0.5) * lung
        if rng.random() < BILATERAL_OPACITY:
            other = "left" if side == "right" else "right"
            zone2 = str(rng.choice(zones))
            ox, oy = _zone_center(other, zone2, rng)
            second = _blob(canvas, ox, oy, rng.uniform(0.07, 0.1), rng.uniform(0.06, 0.08), rng, 0.5)
            region = np.maximum(region, second * _lung_mask(layers, other))
            extra = [f"{side}_{zone}_lung", f"{other}_{zone2}_lung"]
            side = "both"
        density += contrast * region * (0.7 + 0.3 * smooth_noise(rng, canvas.size, 8))
    elif kind == "consolidation":  # dense, homogeneous, with air bronchograms
        region = _blob(canvas, cx, cy, rng.uniform(0.06, 0.08), rng.uniform(0.05, 0.07), rng, 0.15) * lung
        density += contrast * region
        for _ in range(2):
            ang = rng.uniform(0, np.pi)
            d = np.abs((canvas.x - cx) * np.sin(ang) - (canvas.y - cy) * np.cos(ang))
            density -= 0.12 * region * soft(d - 0.004, 0.004)
    else:  # pneumonia: clustered patchy nodular consolidation
        region = np.zeros_like(density)
        for _ in range(int(rng.integers(4, 7))):
            bx, by = cx + rng.normal(0, 0.035), cy + rng.normal(0, 0.03)
            region = np.maximum(region, _blob(canvas, bx, by, rng.uniform(0.02, 0.035), rng.uniform(0.02, 0.03), rng, 0.3))
        region *= lung
        density += contrast * region
    if side == "both":  # a bilateral opacity: each side's zone
        return Finding(kind, side=side, zone=zone, positions=extra, mask=region > 0.35)
    lobe = {("right", "upper"): "upper_right_lobe", ("right", "mid"): "middle_right_lobe",
            ("right", "lower"): "lower_right_lobe", ("left", "upper"): "upper_left_lobe",
            ("left", "mid"): "upper_left_lobe", ("left", "lower"): "lower_left_lobe"}[(side, zone)]
    positions = [lobe] if kind == "pneumonia" else [f"{side}_{zone}_lung"]
    return Finding(kind, side=side, zone=zone, positions=positions, mask=region > 0.35)


def draw_opacity(canvas, layers, density, rng):
    return _airspace("opacity", 0.24, canvas, layers, density, rng)


def draw_consolidation(canvas, layers, density, rng):
    return _airspace("consolidation", 0.34, canvas, layers, density, rng)


def draw_pneumonia(canvas, layers, density, rng):
    return _airspace("pneumonia", 0.28, canvas, layers, density, rng, zones=("mid", "lower"))


def draw_atelectasis(canvas: Canvas, layers: dict, density: np.ndarray, rng: np.random.Generator) -> Finding:
    sides = ["right", "left"] if rng.random() < 0.3 else [rng.choice(["right", "left"])]
    mask = np.zeros(density.shape, bool)
    for side in sides:
        cx = LUNG_X[side] + rng.uniform(-0.02, 0.04) * (1 if side == "left" else -1)
        cy = float(np.mean([0.56, 0.62])) + rng.uniform(-0.02, 0.02)
        ang = rng.uniform(-0.25, 0.25)
        along = (canvas.x - cx) * np.cos(ang) + (canvas.y - cy) * np.sin(ang)
        across = -(canvas.x - cx) * np.sin(ang) + (canvas.y - cy) * np.cos(ang)
        band = soft(np.maximum(np.abs(across) - 0.011, np.abs(along) - 0.07), 0.006) * _lung_mask(layers, side)
        density += 0.30 * band
        mask |= band > 0.4
    positions = [f"{s}_lower_lung" for s in sides]
    return Finding("atelectasis", side="both" if len(sides) == 2 else sides[0], positions=positions, mask=mask)


def draw_pneumothorax(canvas: Canvas, layers: dict, density: np.ndarray, rng: np.random.Generator) -> Finding:
    side = rng.choice(["right", "left"])
    size = rng.choice(SIZES, p=[0.4, 0.35, 0.25])
    depth = {"small": 0.18, "moderate": 0.3, "large": 0.45}[size]
    f = canvas.lung_field(side)
    upper = soft(canvas.y - 0.5, 0.04)
    rim = (f < 0) & (f > -depth) & (upper > 0.5)
    base_lung = float(np.median(density[f < -0.5])) if np.any(f < -0.5) else 0.1
    density[rim] = base_lung - 0.06  # no lung markings: uniform lucency
    pleural_line = (np.abs(f + depth) < 0.035) & (upper > 0.5) & (f < 0)
    density[pleural_line] += 0.14
    apical = f"{side}_apical_lung"
    return Finding("pneumothorax", side=side, size=size, positions=[apical, f"{side}_pleural"], mask=rim)


def draw_round(kind: str, canvas: Canvas, layers: dict, density: np.ndarray, rng: np.random.Generator) -> Finding:
    side = rng.choice(["right", "left"])
    zone = rng.choice(["upper", "mid", "lower"])
    cx, cy = _zone_center(side, zone, rng)
    r = rng.uniform(0.026, 0.034) if kind == "nodule" else rng.uniform(0.05, 0.07)
    region = _blob(canvas, cx, cy, r, r * rng.uniform(0.85, 1.1), rng, 0.05 if kind == "nodule" else 0.25)
    density += (0.36 if kind == "nodule" else 0.38) * region
    return Finding(kind, side=side, zone=zone, positions=[f"{side}_{zone}_lung"], mask=region > 0.4,
                   detail={"cm": round(float(r * 2 * 35), 1)})


def draw_nodule(canvas, layers, density, rng):
    return draw_round("nodule", canvas, layers, density, rng)


def draw_mass(canvas, layers, density, rng):
    return draw_round("mass", canvas, layers, density, rng)


def draw_edema(canvas: Canvas, layers: dict, density: np.ndarray, rng: np.random.Generator) -> Finding:
    lungs = np.clip(layers["lung_right"] + layers["lung_left"], 0, 1)
    r = np.hypot((np.abs(canvas.x - 0.5) - 0.1) / 1.3, canvas.y - 0.5)
    haze = np.exp(-(r / rng.uniform(0.09, 0.12)) ** 2) * lungs
    density += 0.26 * haze * (0.8 + 0.2 * smooth_noise(rng, canvas.size, 6))
    for _ in range(6):  # Kerley B lines at the periphery of the bases
        sgn = rng.choice([-1, 1])
        x0, y0 = 0.5 + sgn * rng.uniform(0.33, 0.38), rng.uniform(0.55, 0.66)
        line = soft(np.maximum(np.abs(canvas.y - y0) - 0.003, np.abs(canvas.x - x0) - 0.025), 0.003)
        density += 0.12 * line * lungs
    return Finding("edema", side="both", positions=["left_hilar", "right_hilar"], mask=haze > 0.35)


def _polyline(canvas: Canvas, pts: list[tuple[float, float]], width: float) -> np.ndarray:
    out = np.zeros(canvas.x.shape, np.float32)
    for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((canvas.x - x0) * dx + (canvas.y - y0) * dy) / (dx * dx + dy * dy + 1e-9), 0, 1)
        d = np.hypot(canvas.x - (x0 + t * dx), canvas.y - (y0 + t * dy))
        out = np.maximum(out, soft(d - width, width))
    return out


def draw_tube(canvas: Canvas, layers: dict, density: np.ndarray, rng: np.random.Generator) -> Finding:
    if rng.random() < 0.55:  # endotracheal tube, tip above the carina
        tip = rng.uniform(0.24, 0.31)
        line = _polyline(canvas, [(0.5, -0.05), (0.5, tip)], 0.008)
        kind, positions, detail = "et_tube", ["trachea"], {"cm": round((0.36 - tip) * 40, 1)}
    else:  # enteric tube down to the stomach
        pts = [(0.49, -0.05), (0.485, 0.45), (0.52, 0.72), (0.6, 0.8)]
        line = _polyline(canvas, pts, 0.007)
        kind, positions, detail = "ng_tube", ["stomach"], {}
    density += 0.55 * line
    return Finding(kind, positions=positions, mask=line > 0.4, detail=detail)


def draw_line(canvas: Canvas, layers: dict, density: np.ndarray, rng: np.random.Generator) -> Finding:
    picc = rng.random() < 0.5
    tip = (0.465, rng.uniform(0.36, 0.44))
    if picc:  # from the right arm along the subclavian vein into the SVC
        pts = [(-0.05, 0.3), (0.12, 0.2), (0.3, 0.19), (0.44, 0.24), tip]
    else:  # right internal jugular central line
        pts = [(0.42, -0.05), (0.44, 0.18), tip]
    at_junction = tip[1] > 0.41
    line = _polyline(canvas, pts, 0.007)
    density += 0.5 * line
    positions = ["cavoatrial_junction"] if at_junction else ["svc"]
    return Finding("picc" if picc else "central_line", positions=positions, mask=line > 0.4)


def draw_pacemaker(canvas: Canvas, layers: dict, density: np.ndarray, rng: np.random.Generator) -> Finding:
    cx, cy = rng.uniform(0.74, 0.8), rng.uniform(0.17, 0.22)
    box = soft(np.maximum(np.abs(canvas.x - cx) - 0.045, np.abs(canvas.y - cy) - 0.03), 0.004)
    leads = _polyline(canvas, [(cx - 0.04, cy), (0.55, 0.3), (0.47, 0.42), (0.5, 0.6)], 0.006)
    leads = np.maximum(leads, _polyline(canvas, [(cx - 0.04, cy), (0.56, 0.32), (0.53, 0.52), (0.6, 0.66)], 0.006))
    density += 0.7 * box + 0.45 * leads
    return Finding("pacemaker", positions=["right_atrium", "right_ventricle"], mask=(box > 0.4) | (leads > 0.4))


def draw_fracture(canvas: Canvas, layers: dict, density: np.ndarray, rng: np.random.Generator) -> Finding:
    side = rng.choice(["right", "left"])
    sgn = 1 if side == "left" else -1
    k = int(rng.integers(3, 8))
    y0 = 0.17 + k * 0.062
    x0 = 0.5 + sgn * rng.uniform(0.3, 0.38)
    curve = y0 + 0.9 * (x0 - 0.5) ** 2 - 0.05 * sgn * (x0 - 0.5)
    gap = soft(np.maximum(np.abs(canvas.x - x0) - 0.014, np.abs(canvas.y - curve) - 0.018), 0.004)
    density -= 0.14 * gap * layers["ribs"]
    callus = soft(np.hypot((canvas.x - x0 - 0.02 * sgn) / 1.6, canvas.y - curve - 0.008) - 0.026, 0.006)
    density += 0.24 * callus
    return Finding("fracture", side=side, positions=["rib"], mask=(gap > 0.4) | (callus > 0.4),
                   detail={"rib": k + 3})


def draw_covid(canvas: Canvas, layers: dict, density: np.ndarray, rng: np.random.Generator) -> Finding:
    """Bilateral, peripheral, lower-zone ground-glass opacities (test split only): the texture
    and density of ``opacity`` in the pattern that marks covid-19."""
    region = np.zeros_like(density)
    for sgn in (-1, 1):  # right, left
        for _ in range(int(rng.integers(1, 3))):
            cx = 0.5 + sgn * rng.uniform(0.25, 0.31)
            cy = rng.uniform(0.52, 0.62)
            region = np.maximum(region, _blob(canvas, cx, cy, rng.uniform(0.06, 0.085), rng.uniform(0.05, 0.07), rng, 0.5))
    lungs = np.clip(layers["lung_right"] + layers["lung_left"], 0, 1)
    region *= lungs
    density += 0.22 * region * (0.7 + 0.3 * smooth_noise(rng, canvas.size, 8))
    return Finding("covid-19", side="both", positions=["left_lower_lung", "right_lower_lung"], mask=region > 0.35)


LOCAL_FINDINGS: dict[str, Callable[..., Finding]] = {
    "effusion": draw_effusion, "opacity": draw_opacity, "consolidation": draw_consolidation,
    "pneumonia": draw_pneumonia, "atelectasis": draw_atelectasis, "pneumothorax": draw_pneumothorax,
    "nodule": draw_nodule, "mass": draw_mass, "edema": draw_edema, "tube": draw_tube, "line": draw_line,
    "pacemaker": draw_pacemaker, "fracture": draw_fracture,
}
GLOBAL_FINDINGS = {"cardiomegaly": prepare_cardiomegaly, "hyperinflation": prepare_hyperinflation}
PREVALENCE = {
    "effusion": 0.16, "opacity": 0.12, "consolidation": 0.09, "pneumonia": 0.09, "atelectasis": 0.12,
    "pneumothorax": 0.08, "cardiomegaly": 0.15, "nodule": 0.08, "mass": 0.06, "edema": 0.08, "tube": 0.09,
    "line": 0.1, "pacemaker": 0.05, "fracture": 0.06, "hyperinflation": 0.07,
}
"""Probability of each finding in an abnormal study (several can co-occur)."""
