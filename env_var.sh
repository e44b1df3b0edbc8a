# Source this file to set the environment opscope reads:   source ./env_var.sh
# Every variable is optional; the value shown is the default opscope uses when it is unset.

# Where `opscope collect`, `compare` and `corun` keep measurements when --store is not given.
export OPSCOPE_STORE="${OPSCOPE_STORE:-runs.db}"

# Where user target specs live; `opscope probe` writes host-measured.toml here and every
# command that takes --target finds specs in it by name.
export OPSCOPE_SPEC_DIR="${OPSCOPE_SPEC_DIR:-$HOME/.config/opscope/specs}"

# Cache of imported models' operators (entries under workloads/); "off" disables it.
export OPSCOPE_CACHE_DIR="${OPSCOPE_CACHE_DIR:-$HOME/.cache/opscope}"

# Thread counts `opscope collect` sweeps when --threads is not given (comma list, or "all").
export OPSCOPE_THREADS="${OPSCOPE_THREADS:-1,2}"

# `opscope collect` pins measuring workers' threads to cores (1) or lets the OS place them (0);
# the same as --pin.  TVM_NUM_THREADS is set inside each measuring worker from the thread count
# being measured, so setting it here has no effect on `collect`.
export OPSCOPE_PIN_THREADS="${OPSCOPE_PIN_THREADS:-0}"

# The cpuinfo file the host's CPU features are read from (default /proc/cpuinfo): the host's TVM
# target turns off every feature of LLVM's CPU model that this file does not list, and a bundle's
# run.py checks the device against it.  Set it only where /proc/cpuinfo is not the CPU's own.
export OPSCOPE_CPUINFO="${OPSCOPE_CPUINFO:-/proc/cpuinfo}"

# Cores `opscope corun` may use (list such as "0-7" or "0,2,4"); empty means all.
export OPSCOPE_CPUSET="${OPSCOPE_CPUSET:-}"

# TVM RPC tracker for board targets (`opscope collect --target rpc-aarch64 ...`), and the device
# key the boards registered under; --tracker and --rpc-key override them.  Start each board's
# server with TVM_NUM_THREADS set to its core count: otherwise TVM caps an x86 board's thread pool
# at half its hardware threads.
export TVM_TRACKER_HOST="${TVM_TRACKER_HOST:-127.0.0.1}"
export TVM_TRACKER_PORT="${TVM_TRACKER_PORT:-9190}"
export OPSCOPE_RPC_KEY="${OPSCOPE_RPC_KEY:-}"
