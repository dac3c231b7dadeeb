"""Input coercion and argument checks, with messages that say what was wrong.

One place decides what the public entry points accept:

* items: numbers (bool, integer or float dtypes), a scalar or a 1-D sequence,
  converted once to a contiguous float64 array;
* weights: positive integers (integer dtypes, or floats holding whole numbers),
  one per item;
* query values: numbers of any shape, never NaN;
* probabilities: numbers in [0, 1], never NaN;
* split points: a 1-D, strictly increasing sequence of non-NaN numbers.
"""

import numpy as np

_NUMERIC_KINDS = "biuf"
_MAX_WEIGHT = float(2**64)


def _numeric_array(values, what):
    # raw bytes are text or a binary blob, never numbers (numpy would read a
    # bytearray as uint8): refused like bytes, whatever wraps them
    raw = values.obj if isinstance(values, memoryview) else values
    if isinstance(raw, (bytes, bytearray)):
        raise TypeError(f"{what} must be numbers; got {type(values).__name__} of raw bytes")
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError) as exc:  # ragged nested sequences and the like
        raise TypeError(f"{what} must be numbers; could not convert {type(values).__name__}: {exc}") from None
    if arr.dtype.kind not in _NUMERIC_KINDS:
        raise TypeError(
            f"{what} must be numbers (bool, integer or float); got an array of dtype {arr.dtype}"
        )
    return arr


def as_items(values):
    """Return ``values`` as a contiguous 1-D float64 array (a 0-d input gives length 1)."""
    arr = _numeric_array(values, "items")
    if arr.ndim > 1:
        raise ValueError(
            f"update() takes a scalar or a 1-D array; got shape {arr.shape} (flatten it with .ravel())"
        )
    return np.ascontiguousarray(arr.reshape(-1), dtype=np.float64)


def as_weights(weights, length):
    """Return ``weights`` as a contiguous uint64 array of ``length`` positive integers."""
    arr = _numeric_array(weights, "weights")
    if arr.dtype.kind == "b":
        raise TypeError("weights must be positive integers, not booleans")
    arr = arr.reshape(-1) if arr.ndim == 0 else arr
    if arr.ndim != 1 or arr.shape[0] != length:
        raise ValueError(f"weights must have one entry per item: {length} items, weights of shape {arr.shape}")
    if length == 0:
        return np.empty(0, dtype=np.uint64)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise ValueError("weights must be finite positive integers; got NaN or infinity")
        if not np.all(arr == np.floor(arr)):
            raise ValueError("weights must be whole numbers; got a fractional weight")
        if arr.max() >= _MAX_WEIGHT:
            raise ValueError("weights must be below 2**64")
    low = arr.min()
    if low < 1:
        raise ValueError(f"weights must be >= 1; got {low!r}")
    return np.ascontiguousarray(arr, dtype=np.uint64)


def as_queries(values, what="query values"):
    """Return ``values`` as a float64 array of any shape, rejecting NaN."""
    arr = np.asarray(_numeric_array(values, what), dtype=np.float64)
    if np.isnan(arr).any():
        raise ValueError(f"{what} must not be NaN")
    return arr


def as_probabilities(p):
    """Return ``p`` as a float64 array of any shape with every entry in [0, 1]."""
    arr = np.asarray(_numeric_array(p, "probabilities"), dtype=np.float64)
    bad = ~((arr >= 0.0) & (arr <= 1.0))  # NaN fails both comparisons
    if bad.any():
        raise ValueError(f"probabilities must lie in [0, 1]; got {arr[bad].flat[0]!r}")
    return arr


def as_splits(splits):
    """Return split points as a 1-D float64 array, strictly increasing and NaN-free."""
    arr = as_queries(splits, "split points")
    if arr.ndim != 1:
        raise ValueError(f"split points must be a 1-D sequence; got shape {arr.shape}")
    if arr.size > 1 and not np.all(arr[1:] > arr[:-1]):
        raise ValueError("split points must be strictly increasing")
    return np.ascontiguousarray(arr)


def check_k(k, lo, hi):
    """Return ``k`` as an int in [lo, hi]."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an integer; got {type(k).__name__}")
    if not lo <= k <= hi:
        raise ValueError(f"k must be in [{lo}, {hi}]; got {k}")
    return int(k)


def check_seed(seed):
    """Return ``seed`` as an int in [0, 2**64), drawing one from the OS when None."""
    if seed is None:
        import secrets

        return secrets.randbits(64)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be a non-negative integer or None; got {type(seed).__name__}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64); got {seed}")
    return int(seed)


def check_nan_policy(policy):
    if policy not in ("ignore", "raise"):
        raise ValueError(f"nan_policy must be 'ignore' or 'raise'; got {policy!r}")
    return policy


def check_confidence(confidence):
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float, np.number)):
        raise TypeError(f"confidence must be a number in (0, 1); got {type(confidence).__name__}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence!r}")
    return float(confidence)


def check_estimator(estimator, names):
    """Return the index of ``estimator`` in ``names``."""
    if not isinstance(estimator, str) or estimator not in names:
        choices = ", ".join(repr(n) for n in names)
        raise ValueError(f"estimator must be one of {choices}; got {estimator!r}")
    return names.index(estimator)


def check_buckets(buckets, maximum):
    if isinstance(buckets, bool) or not isinstance(buckets, (int, np.integer)):
        raise TypeError(f"buckets must be a non-negative integer or None; got {type(buckets).__name__}")
    if not 0 <= buckets <= maximum:
        raise ValueError(f"buckets must be in [0, {maximum}]; got {buckets}")
    return int(buckets)


def check_exact_limit(limit, maximum):
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)):
        raise TypeError(f"exact_limit must be a non-negative integer or None; got {type(limit).__name__}")
    if not 0 <= limit <= maximum:
        raise ValueError(f"exact_limit must be in [0, {maximum}]; got {limit}")
    return int(limit)
