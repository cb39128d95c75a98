"""Default data-dictionary keys shared by the loading, cue and grounding transforms."""


class GroundingKeys:
    """Key names used in data dictionaries; every dictionary transform takes them as defaults."""

    IMAGE = "image"
    COUNTERFACTUAL = "counterfactual"
    ANATOMY = "anatomy"  # dict: anatomical label -> binary mask [1, H, W]
    BOXES = "boxes"  # float [N, 4] xyxy in pixels (x = column, y = row)
    BOX_SCORES = "box_scores"  # float [N] detector confidences in [0, 1]
    BOX_CLASSES = "box_classes"  # int [N] VinBigData class ids
    LESION_TYPE = "lesion_type"
    REPORTED_LOCATIONS = "reported_locations"  # anatomical labels reported for this finding
    ALL_REPORTED_LOCATIONS = "all_reported_locations"  # ... for every finding of the report
    ANOMALY = "anomaly"  # binary anomaly map A
    ANOMALY_SCORE = "anomaly_score"  # x_ano in [0, 1]
    KEPT_BOXES = "kept_boxes"
    KEPT_BOX_SCORES = "kept_box_scores"
    KEPT_BOX_LOCATIONS = "kept_box_locations"  # per kept box: reported labels it intersects
    BOX_CONDITIONS = "box_conditions"  # bool [N, 4]: c1..c4 of Algorithm 1 for every box
    COMPONENTS = "components"  # components of A that intersect kept boxes
    LESION_MASK = "lesion_mask"
    GROUNDED_LOCATIONS = "grounded_locations"
    EMPTY_LOCATIONS = "empty_locations"
    CTR = "ctr"
    CUE_ERRORS = "cue_errors"  # per cue kind: why a backend failed on this study
    ANATOMY_QC = "anatomy_qc"  # Appendix D.2 cross-check verdict
    ANATOMY_REFERENCE = "anatomy_reference"  # the second anatomy source for the cross-check
