"""Drawing one image of the demo "shapes" set and its instances.

Each image holds 1-4 shapes (the class is the *outline*: colour and texture are
drawn independently of the class) on a textured, noisy background with
distractor clutter (lines, arcs, soft blobs, irregular "amoeba" patches) that is
not annotated. Objects are painted back to front; the mask of an object is its
*visible* part, i.e. its full mask minus the masks of the objects painted after
it. Placements that would punch a hole into an earlier object's visible mask
are re-sampled, so every visible mask is representable by COCO polygons
(:mod:`.polygons`). Everything random is drawn from the ``rng`` passed in.
"""

import cv2
import numpy as np

from .polygons import has_hole

# Sorted alphabetically on purpose: mmpretrain's CustomDataset infers the
# classes of a folder-layout set from the sorted sub-folder names, so the crop
# set and the COCO set share the same label order without extra config.
CLASSES = ('circle', 'cross', 'ellipse', 'square', 'star', 'triangle')

# Object diameter as a fraction of the image side, sampled log-uniformly.
# Below ~0.2 (38 px at 192 px) most objects are COCO-small and a detector
# trained for the demo's few hundred CPU iterations barely finds them.
SIZE_RANGE = (0.22, 0.55)
# Occlusion and truncation limits: an object keeps at least this fraction of
# its area visible and inside the image. At 35 % / 40 % the visible part of a
# triangle or square was often ambiguous, and the demo detector's RoI
# classification, not its localisation, capped the mAP.
MIN_VISIBLE_FRAC = 0.7
MIN_INSIDE_FRAC = 0.85


# --------------------------------------------------------------------------
# textures
# --------------------------------------------------------------------------
def _colour(rng):
    return rng.uniform(0, 255, 3).astype(np.float32)


def _grid(h, w):
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return xs, ys


def _low_freq_noise(rng, h, w, channels=3):
    g = int(rng.integers(2, 8))
    small = rng.normal(0, 1, (g, g, channels)).astype(np.float32)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return big.reshape(h, w, channels)


TEXTURES = ('flat', 'gradient', 'stripes', 'noise', 'checker')


def _texture(rng, h, w, kinds=TEXTURES):
    """A (h, w, 3) float32 texture of a kind drawn from ``kinds``; colours
    independent of any class."""
    kind = kinds[int(rng.integers(len(kinds)))]
    xs, ys = _grid(h, w)
    c1, c2 = _colour(rng), _colour(rng)
    if kind == 'flat':
        tex = np.broadcast_to(c1, (h, w, 3)).copy()
        tex += rng.normal(0, rng.uniform(0, 6), (h, w, 3)).astype(np.float32)
    elif kind == 'gradient':
        a = rng.uniform(0, 2 * np.pi)
        u = xs * np.cos(a) + ys * np.sin(a)
        t = (u - u.min()) / max(float(u.max() - u.min()), 1e-6)
        tex = c1 * (1 - t[..., None]) + c2 * t[..., None]
    elif kind == 'stripes':
        a = rng.uniform(0, np.pi)
        period = rng.uniform(3, 14)
        u = xs * np.cos(a) + ys * np.sin(a)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * u / period + rng.uniform(0, 2 * np.pi))
        if rng.random() < 0.5:
            t = (t > 0.5).astype(np.float32)
        tex = c1 * (1 - t[..., None]) + c2 * t[..., None]
    elif kind == 'noise':
        amp = rng.uniform(20, 70)
        tex = c1 + amp * _low_freq_noise(rng, h, w)
        tex += rng.normal(0, rng.uniform(5, 25), (h, w, 3)).astype(np.float32)
    elif kind == 'checker':
        a = rng.uniform(0, np.pi / 2)
        p = rng.uniform(3, 10)
        u = xs * np.cos(a) + ys * np.sin(a)
        v = -xs * np.sin(a) + ys * np.cos(a)
        t = ((np.floor(u / p) + np.floor(v / p)) % 2).astype(np.float32)
        tex = c1 * (1 - t[..., None]) + c2 * t[..., None]
    else:
        raise ValueError(kind)
    return tex.astype(np.float32)


# --------------------------------------------------------------------------
# background and clutter
# --------------------------------------------------------------------------
# Backgrounds and objects are smooth (no stripes or checkers). On striped or
# checkered backgrounds shapes were camouflaged beyond what a detector learns
# in the demo's few hundred CPU iterations (bbox mAP 0.15 after 800); inside a
# shape they put strong edges next to the outline that defines its class (the
# first-order crop classifier reached only 66-75 % top-1 with them). Only the
# unannotated clutter patches use every kind.
SMOOTH_TEXTURES = ('flat', 'gradient', 'noise')
# Minimum RGB distance between an object's mean colour and the mean colour of
# the background it covers; closer fills are re-drawn (camouflaged objects).
MIN_CONTRAST = 60.0


def draw_background(rng, s):
    """A (s, s, 3) float32 background: smooth textures, blobs and unannotated clutter."""
    img = _texture(rng, s, s, SMOOTH_TEXTURES)
    if rng.random() < 0.6:  # blend with a second texture through a soft map
        other = _texture(rng, s, s, SMOOTH_TEXTURES)
        alpha = 1 / (1 + np.exp(-3 * _low_freq_noise(rng, s, s, 1)))
        img = img * (1 - alpha) + other * alpha
    img = np.ascontiguousarray(np.clip(img, 0, 255))

    # soft blurred blobs
    for _ in range(int(rng.integers(0, 5))):
        m = np.zeros((s, s), np.float32)
        c = (int(rng.integers(0, s)), int(rng.integers(0, s)))
        ax = (int(rng.uniform(0.03, 0.15) * s) + 1, int(rng.uniform(0.03, 0.15) * s) + 1)
        cv2.ellipse(m, c, ax, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        sigma = rng.uniform(2, 6)
        m = cv2.GaussianBlur(m, (0, 0), sigma) * rng.uniform(0.4, 0.9)
        img = img * (1 - m[..., None]) + _colour(rng) * m[..., None]

    # irregular hard-edged textured patches ("amoebas"): clutter, not objects
    for _ in range(int(rng.integers(0, 2))):
        m = np.zeros((s, s), np.uint8)
        cv2.fillPoly(m, [_to_fixed(_amoeba(rng, s))], 1, cv2.LINE_8, 4)
        tex = _texture(rng, s, s)
        mb = m.astype(bool)
        img[mb] = tex[mb]

    img = np.ascontiguousarray(img)
    # straight lines and arcs
    for _ in range(int(rng.integers(0, 4))):
        p1 = tuple(int(v) for v in rng.integers(-s // 4, s + s // 4, 2))
        p2 = tuple(int(v) for v in rng.integers(-s // 4, s + s // 4, 2))
        cv2.line(
            img, p1, p2, tuple(float(v) for v in _colour(rng)), int(rng.integers(1, 4)), cv2.LINE_AA
        )
    for _ in range(int(rng.integers(0, 4))):
        c = tuple(int(v) for v in rng.integers(0, s, 2))
        ax = (int(rng.uniform(0.05, 0.4) * s) + 1, int(rng.uniform(0.05, 0.4) * s) + 1)
        start = float(rng.uniform(0, 360))
        cv2.ellipse(
            img,
            c,
            ax,
            float(rng.uniform(0, 180)),
            start,
            start + float(rng.uniform(40, 200)),
            tuple(float(v) for v in _colour(rng)),
            int(rng.integers(1, 3)),
            cv2.LINE_AA,
        )
    # wiggly polylines
    for _ in range(int(rng.integers(0, 3))):
        n = int(rng.integers(4, 10))
        steps = rng.normal(0, 0.08 * s, (n, 2)).cumsum(0) + rng.uniform(0, s, 2)
        cv2.polylines(
            img,
            [np.round(steps).astype(np.int32)],
            False,
            tuple(float(v) for v in _colour(rng)),
            int(rng.integers(1, 3)),
            cv2.LINE_AA,
        )
    return img


def _amoeba(rng, s):
    r = rng.uniform(0.04, 0.15) * s
    c = rng.uniform(0, s, 2)
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    rad = np.ones_like(t)
    for k in range(2, 6):
        rad += rng.uniform(0.05, 0.3) * np.sin(k * t + rng.uniform(0, 2 * np.pi))
    rad = r * np.clip(rad, 0.3, None)
    return np.stack([c[0] + rad * np.cos(t), c[1] + rad * np.sin(t)], 1)


def _to_fixed(pts, shift=4):
    return np.round(np.asarray(pts) * (1 << shift)).astype(np.int32)


# --------------------------------------------------------------------------
# shapes
# --------------------------------------------------------------------------
def _shape_polygon(name, rng, cx, cy, diameter, angle):
    """Vertices (N, 2) of one shape whose largest extent is ~diameter."""
    r = diameter / 2
    if name == 'circle':
        t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1) * r
    elif name == 'ellipse':
        t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
        pts = np.stack([np.cos(t), rng.uniform(0.4, 0.65) * np.sin(t)], 1) * r
    elif name == 'square':
        a = r / np.sqrt(2)
        b = a * rng.uniform(0.8, 1.0)
        pts = np.array([[-a, -b], [a, -b], [a, b], [-a, b]])
    elif name == 'triangle':
        t = np.deg2rad(np.array([90, 210, 330]) + rng.uniform(-12, 12, 3))
        pts = np.stack([np.cos(t), np.sin(t)], 1) * (r * rng.uniform(0.85, 1.0, 3))[:, None]
    elif name == 'cross':
        # A plus sign; it replaced a hexagon class, which at the demo's object
        # sizes the detector could not tell from circles and squares (AP 0.22,
        # never the top-scoring class on its own objects).
        w = r * rng.uniform(0.3, 0.45)
        pts = np.array(
            [
                [w, -r],
                [w, -w],
                [r, -w],
                [r, w],
                [w, w],
                [w, r],
                [-w, r],
                [-w, w],
                [-r, w],
                [-r, -w],
                [-w, -w],
                [-w, -r],
            ]
        )
    elif name == 'star':
        inner = rng.uniform(0.38, 0.5)
        t = np.arange(10) * np.pi / 5 - np.pi / 2
        rad = np.where(np.arange(10) % 2 == 0, 1.0, inner) * r
        pts = np.stack([np.cos(t) * rad, np.sin(t) * rad], 1)
    else:
        raise ValueError(name)
    ca, sa = np.cos(angle), np.sin(angle)
    rot = np.array([[ca, -sa], [sa, ca]])
    return pts @ rot.T + np.array([cx, cy])


def object_fill(rng, img, mask, tries=8):
    """Pixels of a smooth texture for ``mask``, contrasting with ``img``."""
    s = img.shape[0]
    under = img[mask].mean(0)
    for _ in range(tries):
        fill = _texture(rng, s, s, SMOOTH_TEXTURES)[mask]
        if np.linalg.norm(fill.mean(0) - under) >= MIN_CONTRAST:
            break
    return fill


def generate_image(
    rng, img_size, max_objects=4, min_area=30, min_visible_frac=MIN_VISIBLE_FRAC, max_tries=25
):
    """One image and its instances.

    Returns ``(img_bgr_uint8, instances)``; each instance is a dict with
    ``label`` (index into CLASSES), ``mask`` (bool visible mask) and
    ``full_area`` (in-image pixels of the whole shape), in painting order
    (back to front).
    """
    s = img_size
    img = draw_background(rng, s)
    n_obj = int(rng.integers(1, max_objects + 1))
    full_masks, vis_masks, labels = [], [], []
    for _ in range(n_obj):
        label = int(rng.integers(len(CLASSES)))
        placed = None
        for _try in range(max_tries):
            diameter = s * float(np.exp(rng.uniform(*np.log(SIZE_RANGE))))
            cx, cy = rng.uniform(0.05 * s, 0.95 * s, 2)
            pts = _shape_polygon(CLASSES[label], rng, cx, cy, diameter, rng.uniform(0, 2 * np.pi))
            m = np.zeros((s, s), np.uint8)
            cv2.fillPoly(m, [_to_fixed(pts)], 1, cv2.LINE_8, 4)
            full_area = abs(cv2.contourArea(pts.astype(np.float32)))
            if m.sum() < max(min_area, MIN_INSIDE_FRAC * full_area):
                continue  # mostly outside the image
            new_vis = [v & (1 - m) for v in vis_masks]
            ok = True
            for fm, nv in zip(full_masks, new_vis):
                if nv.sum() < max(min_area, min_visible_frac * fm.sum()) or has_hole(nv):
                    ok = False
                    break
            if ok:
                placed = (m, new_vis)
                break
        if placed is None:
            continue
        m, vis_masks = placed
        full_masks.append(m)
        vis_masks.append(m.copy())
        labels.append(label)
        # paint the object with a class-independent texture (+ optional rim)
        mb = m.astype(bool)
        img[mb] = object_fill(rng, img, mb)
        if rng.random() < 0.3:
            k = int(rng.integers(1, 3))
            rim = mb & ~cv2.erode(m, np.ones((2 * k + 1, 2 * k + 1), np.uint8)).astype(bool)
            img[rim] = _colour(rng)

    # global photometric nuisance: illumination, sensor noise, blur
    xs, ys = _grid(s, s)
    a = rng.uniform(0, 2 * np.pi)
    u = (xs * np.cos(a) + ys * np.sin(a)) / s
    img = img * (rng.uniform(0.75, 1.0) + rng.uniform(0, 0.3) * u)[..., None]
    img = img + rng.normal(0, rng.uniform(2, 12), img.shape).astype(np.float32)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.0))
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)

    instances = [
        dict(label=lab, mask=v.astype(bool), full_area=int(fm.sum()))
        for lab, v, fm in zip(labels, vis_masks, full_masks)
    ]
    return img, instances
