#!/usr/bin/env bash
# Before a GPU session, on a machine with PyPI (this one): fetch as Python 3.12 manylinux wheels the
# packages that the GPU machines' image lacks and the RL benchmark needs (gymnasium, ale-py,
# MuJoCo, Box2D and pygame for CarRacing), into .whl/ (git-ignored locally). Then name `.whl` in the device call's `carry`;
# bench/gpu_check.sh installs them into /tmp/site when it finds them. About 45 MB.
#   bash bench/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
version() { python3 -c "import importlib.metadata as m; print(m.version('$1'))"; }
mujoco=$(version mujoco)
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    "gymnasium==$(version gymnasium)" farama-notifications "ale-py==$(version ale-py)" \
    "mujoco==$mujoco" "mujoco-core==$mujoco" "mujoco-studio==$mujoco" glfw pyopengl websockets \
    "Box2D==$(version Box2D)" "pygame-ce==$(version pygame-ce)"
du -sh .whl
