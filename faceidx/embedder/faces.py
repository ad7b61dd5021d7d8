"""Which faces of an image to keep: the face-selection policy.

    order = select_faces(boxes, scores, (height, width), policy="central")
    kept = [boxes[i] for i in order]

Policies (``POLICIES``):

    largest   one face: the largest box (ties: the higher detector score). The default:
              identification wants the person the photo is of, and that person is
              nearly always the biggest face.
    central   one face: the box whose centre is nearest the image centre, measured in
              units of the image's half-diagonal, minus a bonus for size (a large face
              slightly off-centre beats a tiny face in the middle):
              cost = distance / half_diagonal - 0.5 * sqrt(box_area / image_area).
    all       every face, largest first (a group photo gives one row per face).

Boxes are (left, top, right, bottom) in dlib's inclusive pixel convention and may reach
past the image border. The functions are pure (numbers in, indices out) so callers that
detect elsewhere (a service answering ``query --faces all``, ``enrol`` refusing group
photos via ``faces_found``) use the same rule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

POLICIES = ("largest", "central", "all")
DEFAULT_POLICY = "largest"
SIZE_BONUS = 0.5

Box = tuple[int, int, int, int]


def box_area(box: Box) -> int:
    """Pixels covered by an inclusive (left, top, right, bottom) box."""
    left, top, right, bottom = box
    return max(0, right - left + 1) * max(0, bottom - top + 1)


def centrality_cost(box: Box, image_hw: tuple[int, int]) -> float:
    """Lower is more central: centre distance / half-diagonal - SIZE_BONUS * sqrt(area share)."""
    h, w = image_hw
    left, top, right, bottom = box
    cx, cy = (left + right) / 2.0, (top + bottom) / 2.0
    half_diag = 0.5 * math.hypot(w, h)
    dist = math.hypot(cx - (w - 1) / 2.0, cy - (h - 1) / 2.0) / half_diag
    return dist - SIZE_BONUS * math.sqrt(box_area(box) / float(max(1, w * h)))


def select_faces(boxes: Sequence[Box], scores: Sequence[float], image_hw: tuple[int, int],
                 policy: str = DEFAULT_POLICY) -> list[int]:
    """Indices of the faces `policy` keeps, in output order ([] when there is no face).

    boxes: (left, top, right, bottom) per face; scores: detector scores (ties);
    image_hw: (height, width) of the image the boxes refer to.
    """
    check_policy(policy)
    if len(boxes) != len(scores):
        raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
    by_size = sorted(range(len(boxes)), key=lambda i: (-box_area(boxes[i]), -float(scores[i]), i))
    if policy == "all":
        return by_size
    if policy == "largest":
        return by_size[:1]
    return sorted(by_size, key=lambda i: centrality_cost(boxes[i], image_hw))[:1]


def check_policy(policy: str) -> str:
    """`policy` itself, or ValueError naming the choices."""
    if policy not in POLICIES:
        raise ValueError(f"faces policy must be one of {POLICIES}, got {policy!r}")
    return policy
