#!/usr/bin/env bash
# The GPU checks in one short run, for a CUDA machine lent for a few minutes (issue 7,
# benchmark 5; issue 8, resume): the `gpu` tests, training throughput at 224 px for the four
# CNNs, the CAM stage on the GPU (few images: the plain library's ROAD and AblationCAM are
# slow), the deletion and insertion curves, and VGG16's collapsed head on CUDA. Prints everything; writes nothing in the tree.
#
#   bash bench/gpu_check.sh            # with torch, torchvision and xaimed's dependencies
#
# On a machine without network whose Python lacks pytorch-grad-cam, put its wheels in .whl/
# first (`pip download grad-cam ttach --no-deps -d .whl`): they are installed into a temp dir.
set -uo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c "import pytorch_grad_cam" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/xaimed-site .whl/*.whl
    export PYTHONPATH=/tmp/xaimed-site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD/src:$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

timeout 240 python3 -m pytest -m gpu -q -p no:cacheprovider tests/ 2>&1 | tail -15
for model in resnet50 densenet121 vgg16 efficientnet_b0; do
    timeout 60 python3 bench/train_throughput.py --model "$model" --size 224 --batch-size 64 \
        --images 1024 --epochs 2 --device cuda --threads 2
done
timeout 120 python3 bench/cam_stage.py --device cuda --size 224 --images 16 \
    --ablation-images 2 --threads 2
timeout 60 python3 bench/pooled_head.py --device cuda --size 48 --batch-size 64 --steps 10
timeout 60 python3 bench/faithfulness.py --device cuda --size 224 --images 32 --batch-size 64
