"""The library entry point: open a gallery once, then identify, verify, enrol and erase.

    import faceidx
    g = faceidx.open_gallery("faces.index")
    for face in g.identify_image("group.jpg", faces="all"):
        print(face.box, face.status, face.decision, face.top_score, face.threshold)

See faceidx/gallery/gallery.py for the methods (a few lines each).
"""

from faceidx.gallery.gallery import Gallery, Snapshot, Verification, open_gallery
from faceidx.query.identify import KNOWN, NO_FACE, UNKNOWN, UNLABELLED, Candidate, Identification

__all__ = ["KNOWN", "NO_FACE", "UNKNOWN", "UNLABELLED", "Candidate", "Gallery",
           "Identification", "Snapshot", "Verification", "open_gallery"]
