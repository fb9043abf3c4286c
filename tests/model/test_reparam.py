"""Re-parameterisation folds every BatchNorm and RepVGG branch and leaves features unchanged."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the PyTorch model needs torch (extra 'export')")


def test_reparameterize_keeps_features(reference_checkpoint, reference_images):
    from edgesam_edge import transforms as T
    from edgesam_edge.model import sam_model_registry
    from edgesam_edge.model.reparam import count_batchnorms, reparameterize
    from edgesam_edge.model.repvit import ConvBN, RepDW

    sam = sam_model_registry["edge_sam"](checkpoint=str(reference_checkpoint), upsample_mode="bilinear")
    x = torch.from_numpy(T.prepare(reference_images["chelsea"], 1024))
    with torch.no_grad():
        before = sam.image_encoder(x).numpy()
        assert count_batchnorms(sam) > 0
        reparameterize(sam)
        after = sam.image_encoder(x).numpy()
    assert count_batchnorms(sam) == 0
    assert not any(isinstance(m, (ConvBN, RepDW)) for m in sam.modules())
    assert np.abs(after - before).max() <= 1e-3
    n_before = sum(p.numel() for p in sam_model_registry["edge_sam"]().image_encoder.parameters())
    n_after = sum(p.numel() for p in sam.image_encoder.parameters())
    assert n_after < n_before


def test_reparameterize_needs_eval_mode():
    from edgesam_edge.model import sam_model_registry
    from edgesam_edge.model.reparam import reparameterize

    sam = sam_model_registry["edge_sam"]().train()
    with pytest.raises(RuntimeError, match="eval"):
        reparameterize(sam)
