"""Layer tables: FRAME's CSV files read unchanged (its MAC counts), opscope's own format, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from opscope.errors import WorkloadError
from opscope.workloads.layer_table import load_layer_table

TABLES = Path(__file__).resolve().parents[1] / "opscope" / "workloads" / "tables"


def write(tmp_path, text, name="model.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def macs(op):
    return op.flops // 2


def test_frame_cnn_rows_match_frames_mac_counts(tmp_path):
    # rows in FRAME's data/model/alexnet.csv and mobilenet_v2.csv style: K,C,Y,X,R,S,T
    p = write(tmp_path, "K,C,Y,X,R,S,T\n64,3,224,224,11,11,1\n1,32,112,112,3,3,2\n4096,9216,1,1,1,1,0\n")
    b = 2
    conv, dw, fc = load_layer_table(p, batch_size=b)
    # FRAME CONV2D.get_num_ops: B*K*C*(Y-R+1)*(X-S+1)*R*S (no stride, no padding)
    assert macs(conv) == b * 64 * 3 * (224 - 11 + 1) * (224 - 11 + 1) * 11 * 11
    assert conv.kind == "conv2d" and conv.tensors_of("output")[0].shape == (b, 64, 214, 214)
    # FRAME DWCONV.get_num_ops: B*C*Y*X*R*S (output keeps Y x X; K is ignored)
    assert macs(dw) == b * 32 * 112 * 112 * 3 * 3
    assert dw.kind == "depthwise_conv2d" and dw.tensors_of("output")[0].shape == (b, 32, 112, 112)
    # FRAME FC.get_num_ops: B*O*I
    assert macs(fc) == b * 4096 * 9216
    assert fc.kind == "dense"
    assert all(op.attr("source") == "frame" and op.prim_func is None for op in (conv, dw, fc))


def test_frame_language_model_rows(tmp_path):
    # FRAME's utils/get_language_model.py rows for H=12, seq 512, D=768: M,N,D,H,Z,Z,T
    p = write(tmp_path, "M,N,D,H,Z,Z,T\n2304,512,768,1,1,1,3\n12,512,512,64,1,1,4\n12,512,512,64,1,1,5\n")
    gemm, logit, attend = load_layer_table(p, batch_size=1)
    # GEMM: B*M*N*K with weight (M,K) and input (B,K,N)
    assert macs(gemm) == 1 * 2304 * 512 * 768
    assert gemm.tensors_of("weight")[0].shape == (2304, 768)
    # Logit / Attend: B*H*M*N*D
    assert macs(logit) == 1 * 12 * 512 * 512 * 64
    assert macs(attend) == 1 * 12 * 512 * 512 * 64
    assert logit.attr("attention") == "logit" and attend.attr("attention") == "attend"
    assert logit.attr("heads") == 12 and logit.attr("seq_len") == 512 and logit.attr("head_dim") == 64
    assert logit.gemm.batch == 12 and (logit.gemm.m, logit.gemm.n, logit.gemm.k) == (512, 512, 64)
    assert (attend.gemm.m, attend.gemm.n, attend.gemm.k) == (512, 64, 512)


def test_shipped_vgg16_table_has_vgg16s_macs():
    ops = load_layer_table(TABLES / "vgg16_frame.csv")
    # VGG16 (Simonyan & Zisserman, config D): conv MACs = sum K*C*9*H*W at the real output sizes
    convs = [(64, 3, 224), (64, 64, 224), (128, 64, 112), (128, 128, 112), (256, 128, 56), (256, 256, 56),
             (256, 256, 56), (512, 256, 28), (512, 512, 28), (512, 512, 28), (512, 512, 14), (512, 512, 14),
             (512, 512, 14)]
    fcs = [(4096, 25088), (4096, 4096), (1000, 4096)]
    expected = sum(k * c * 9 * h * h for k, c, h in convs) + sum(o * i for o, i in fcs)
    assert sum(macs(op) for op in ops) == expected
    assert len(ops) == 16


def test_opscope_table_with_stride_padding_groups(tmp_path):
    p = write(tmp_path, "name,type,K,C,Y,X,R,S,stride,padding,groups,M,N,D,H,count\n"
                        "c1,conv2d,64,3,224,224,7,7,2,3,,,,,,1\n"
                        "g,conv2d,64,32,56,56,3,3,1,1,4,,,,,2\n"
                        "dw,depthwise_conv2d,,32,56,56,3,3,2,1,,,,,,1\n"
                        "fc,dense,10,512,,,,,,,,,,,,1\n"
                        "mm,matmul,,,,,,,,,,16,32,8,,1\n"
                        "lg,logit,,,,,,,,,,128,128,64,8,3\n")
    c1, g, dw, fc, mm, lg = load_layer_table(p, batch_size=1)
    p1 = (224 + 2 * 3 - 7) // 2 + 1
    assert p1 == 112 and macs(c1) == 64 * 3 * p1 * p1 * 7 * 7
    assert c1.attr("stride") == (2, 2) and c1.attr("padding") == (3, 3)
    assert macs(g) == 64 * (32 // 4) * 56 * 56 * 9 and g.count == 2 and g.attr("groups") == 4
    pd = (56 + 2 - 3) // 2 + 1
    assert dw.kind == "depthwise_conv2d" and macs(dw) == 32 * pd * pd * 9
    assert macs(fc) == 10 * 512
    assert macs(mm) == 16 * 32 * 8
    assert lg.count == 3 and macs(lg) == 8 * 128 * 128 * 64 and lg.attr("attention") == "logit"


def test_dtype_sets_bytes(tmp_path):
    p = write(tmp_path, "K,C,Y,X,R,S,T\n10,20,1,1,1,1,0\n")
    (f32,) = load_layer_table(p, dtype="float32")
    (f16,) = load_layer_table(p, dtype="float16")
    assert f32.bytes == 4 * (20 + 10 * 20 + 10) and f16.bytes == f32.bytes // 2


@pytest.mark.parametrize("text, where, what", [
    ("K,C,Y,X,R,S,T\n64,3,224,224,11,11,1\n64,3,224,x,11,11,1\n", ":3", "column 4"),
    ("K,C,Y,X,R,S,T\n64,3,224,224,11,11,9\n", ":2", "type T=9"),
    ("K,C,Y,X,R,S,T\n64,3,224,224,11,1\n", ":2", "expected 7 values"),
    ("K,C,Y,X,R,S,T\n64,3,5,5,11,11,1\n", ":2", "larger than its input"),
    ("K,C,Y,X,R,S,T\n0,3,5,5,1,1,1\n", ":2", ">= 1"),
    ("A,B\n1,2\n", ":1", "unknown header"),
    ("name,type,K,C\nx,conv3d,1,2\n", ":2", "type 'conv3d'"),
    ("name,type,K,C,Y,X,R,S\nx,conv2d,4,2,8,8,3,\n", ":2", "'S' is required"),
    ("name,type,K,C,Y,X,R,S,groups\nx,conv2d,4,3,8,8,3,3,2\n", ":2", "groups=2 must divide"),
    ("name,type,K,Cx\nx,dense,1,2\n", ":1", "unknown column 'Cx'"),
])
def test_malformed_csv_names_file_and_line(tmp_path, text, where, what):
    p = write(tmp_path, text)
    with pytest.raises(WorkloadError) as info:
        load_layer_table(p)
    msg = str(info.value)
    assert f"{p}{where}" in msg and what in msg


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(WorkloadError, match="cannot read"):
        load_layer_table(tmp_path / "none.csv")
    with pytest.raises(WorkloadError, match="empty"):
        load_layer_table(write(tmp_path, "\n"))
    with pytest.raises(WorkloadError, match="no rows"):
        load_layer_table(write(tmp_path, "K,C,Y,X,R,S,T\n"))
