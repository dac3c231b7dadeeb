# cython: language_level=3, binding=True, embedsignature=True
# cython: boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The KLL sketch type: a thin Cython layer over the C core in csrc/.

The layer only converts and guards: arguments are checked (mostly by
qsketch._validate) before any C call, C status codes become Python
exceptions, and every C call on a sketch runs under that sketch's lock.  Batch
work releases the GIL inside the lock, so threads can feed distinct sketches
in parallel and can share one sketch safely.
"""

from libc.math cimport log, sqrt
from libc.stdint cimport UINT64_MAX, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.float cimport PyFloat_Check
from cpython.long cimport PyLong_Check
from cpython.pythread cimport (
    NOWAIT_LOCK, WAIT_LOCK, PyThread_acquire_lock, PyThread_allocate_lock,
    PyThread_free_lock, PyThread_release_lock, PyThread_type_lock,
)

cimport qsketch._core as c
from qsketch._core cimport qs_kll, qs_status

import numpy as np

from qsketch import _validate
from qsketch.errors import SerializationError

MIN_K = c.QS_KLL_MIN_K
MAX_K = c.QS_KLL_MAX_K
DEFAULT_K = c.QS_KLL_DEFAULT_K

# Scalar updates are staged here and handed to the C batch path this many at
# a time: a Python-level update(x) then costs one append, and the staged items
# get the bulk path's speed.  Every other method flushes the stage first.
cdef enum:
    PENDING_CAPACITY = 1024

# Bits of the "binding flags" byte of the C sketch, kept in the serialized form.
cdef enum:
    FLAG_NAN_RAISE = 1
    FLAG_ESTIMATOR_SHIFT = 1  # bits 1-2: index into ESTIMATORS
    FLAG_ESTIMATOR_MASK = 6

# Estimator names, in the order of their code in the binding flags, and the C
# enum value each maps to.
ESTIMATORS = ("learned", "linear", "step", "spline")
cdef int[4] _EST_C = [2, 1, 0, 3]  # QS_EST_LEARNED, QS_EST_LINEAR, QS_EST_STEP, QS_EST_SPLINE

# Confidence of the a priori error constants (see qs_kll_normalized_rank_error).
cdef double _BASE_DELTA = 0.01


cdef object _status_error(qs_status st, str action):
    if st == c.QS_ENOMEM:
        return MemoryError(f"{action}: out of memory")
    if st == c.QS_ENAN:
        return ValueError(f"{action}: NaN in the input and nan_policy='raise'; the sketch is unchanged")
    if st == c.QS_EOVERFLOW:
        return OverflowError(f"{action}: the total weight would exceed 2**64 - 1; the sketch is unchanged")
    if st == c.QS_EINVAL:
        return ValueError(f"{action}: invalid argument")
    return RuntimeError(f"{action}: unexpected status {<int>st}")


def _kll_from_bytes(data):
    """Unpickling entry point (pickle needs a module-level callable)."""
    return KLLSketch.from_bytes(data)


cdef class KLLSketch:
    """KLLSketch(k=200, *, seed=None, nan_policy="ignore", estimator="spline", exact_limit=None, buckets=None)

    A streaming quantile sketch: the KLL compactors of Karnin, Lang and
    Liberty (2016), with the lazy compaction of Apache DataSketches, plus an
    accuracy layer of adaptive buckets with exact counts (docs/algorithm.md)
    whose answers are clipped to the compactors' guaranteed interval.

    It summarizes a stream of float64 items in O(k log(n/k)) space and answers
    rank and quantile queries.  While nothing has been compacted (small
    streams) every answer is exact; afterwards a normalized rank estimate r
    satisfies ``|r - true_rank| <= normalized_rank_error()`` with about 99%
    confidence per query (about 1.33% of n at k=200).

    Parameters
    ----------
    k : int, default 200
        Accuracy parameter, in [8, 65535].  Error shrinks roughly as 1/k and
        space grows as k.  Below k = 64 the lowest compactor levels may
        shrink to 2 items (the KLL paper's floor; DataSketches keeps 8),
        which saves about half of a small sketch's bytes.
    seed : int or None
        Seed of the sketch's own random generator (in [0, 2**64)).  The same
        seed and the same calls give bit-identical sketches.  None draws a
        seed from the operating system.
    nan_policy : {"ignore", "raise"}
        "ignore" skips NaN items and counts them in ``nan_count``; "raise"
        rejects a call that holds a NaN with ValueError, leaving the sketch
        unchanged.  +-inf are ordinary items.
    estimator : {"spline", "learned", "linear", "step"}
        Default estimator of rank and quantile queries (each query may
        override it).  "spline" answers from the accuracy layer, clipped to
        KLL's guaranteed interval (on a sketch without the layer it is
        "learned"); "learned" and "linear" interpolate between the retained
        items (docs/interpolation.md); "step" is classic KLL.
    exact_limit : int or None
        Distinct values kept with exact counts before the compactors take
        over (None: max(256, 1.5 k); 0 disables the exact mode).
    buckets : int or None
        Boundaries of the accuracy layer (None: 2 k, at most 4096; 400 at the default k;
        0: no layer, the plain KLL sketch).  A boundary costs about 11 bytes
        serialized.

    Notes
    -----
    Ranks are normalized to [0, 1]: with ``inclusive=True`` the rank of x is
    the fraction of items <= x, with ``inclusive=False`` the fraction < x
    (Apache DataSketches' convention).  An empty sketch answers every query
    with NaN.  One sketch may be shared between threads: each call holds the
    sketch's lock, and batch calls release the GIL while they work.

    Examples
    --------
    >>> import numpy as np, qsketch
    >>> s = qsketch.KLLSketch(k=200, seed=7)
    >>> s.update(np.arange(1000.0))
    >>> s.n, s.min, s.max
    (1000, 0.0, 999.0)
    >>> round(s.quantile(0.5), -1)  # doctest: +SKIP
    500.0
    >>> s.rank(-1.0), s.rank(999.0)
    (0.0, 1.0)
    """

    cdef qs_kll *_sk
    cdef PyThread_type_lock _lock
    cdef int _nan_raise
    cdef int _estimator  # index into ESTIMATORS
    cdef double *_pending
    cdef Py_ssize_t _npending
    # How many scalar updates may be staged before n or nan_count could pass
    # 2**64 - 1; refreshed under the lock after every change to the sketch.
    cdef uint64_t _headroom

    def __cinit__(self, *args, **kwargs):
        self._sk = NULL
        self._pending = NULL
        self._npending = 0
        self._lock = PyThread_allocate_lock()
        if self._lock == NULL:
            raise MemoryError("cannot allocate a lock")

    def __init__(self, k=DEFAULT_K, *, seed=None, nan_policy="ignore", estimator="spline",
                 exact_limit=None, buckets=None):
        cdef uint32_t kk = _validate.check_k(k, MIN_K, MAX_K)
        cdef uint64_t sd = _validate.check_seed(seed)
        policy = _validate.check_nan_policy(nan_policy)
        cdef int est = _validate.check_estimator(estimator, ESTIMATORS)
        cdef uint32_t limit = (c.qs_kll_default_exact_limit(kk) if exact_limit is None
                               else _validate.check_exact_limit(exact_limit, c.QS_KLL_MAX_EXACT_LIMIT))
        cdef uint32_t nb = (c.qs_kll_default_buckets(kk) if buckets is None
                            else _validate.check_buckets(buckets, c.QS_KLL_MAX_BUCKETS))
        cdef qs_status st
        cdef qs_kll *sk = c.qs_kll_new(kk, sd, &st)
        if sk == NULL:
            raise _status_error(st, "KLLSketch()")
        c.qs_kll_set_exact_limit(sk, limit)
        st = c.qs_kll_set_buckets(sk, nb)
        if st != c.QS_OK:
            c.qs_kll_free(sk)
            raise _status_error(st, "KLLSketch()")
        c.qs_kll_set_user_flags(sk, (FLAG_NAN_RAISE if policy == "raise" else 0)
                                | (est << FLAG_ESTIMATOR_SHIFT))
        self._adopt(sk)

    def __dealloc__(self):
        if self._sk != NULL:
            c.qs_kll_free(self._sk)
        if self._lock != NULL:
            PyThread_free_lock(self._lock)
        free(self._pending)

    cdef void _adopt(self, qs_kll *sk) noexcept:
        if self._sk != NULL:
            c.qs_kll_free(self._sk)
        self._sk = sk
        cdef uint8_t flags = c.qs_kll_user_flags(sk)
        self._nan_raise = (flags & FLAG_NAN_RAISE) != 0
        self._estimator = (flags & FLAG_ESTIMATOR_MASK) >> FLAG_ESTIMATOR_SHIFT
        self._refresh_headroom()

    cdef void _refresh_headroom(self) noexcept:
        cdef uint64_t room_n = UINT64_MAX - c.qs_kll_n(self._sk)
        cdef uint64_t room_nan = UINT64_MAX - c.qs_kll_nan_count(self._sk)
        self._headroom = room_n if room_n < room_nan else room_nan

    @staticmethod
    cdef KLLSketch _wrap(qs_kll *sk):
        cdef KLLSketch obj = KLLSketch.__new__(KLLSketch)
        obj._adopt(sk)
        return obj

    cdef int _acquire(self) except -1:
        if self._sk == NULL:
            raise RuntimeError("KLLSketch is not initialized (create it with KLLSketch(...))")
        if not PyThread_acquire_lock(self._lock, NOWAIT_LOCK):
            with nogil:
                PyThread_acquire_lock(self._lock, WAIT_LOCK)
        return 0

    cdef inline void _release(self) noexcept:
        PyThread_release_lock(self._lock)

    cdef int _sync(self) except -1:
        """Take the lock and hand the staged scalar updates to the core.

        The stage is only touched with the GIL held, and the flush keeps the
        GIL, so appends from other threads cannot interleave with it.
        """
        cdef qs_status st
        cdef Py_ssize_t i
        self._acquire()
        if self._npending:
            st = c.qs_kll_update_batch(self._sk, self._pending, <size_t>self._npending, 0)
            if st == c.QS_EOVERFLOW:
                # Only reachable when another thread's batch used up the
                # headroom after these items were staged: keep what fits,
                # never jam the sketch, and report it.
                for i in range(self._npending):
                    if c.qs_kll_update(self._sk, self._pending[i], 0) != c.QS_OK:
                        break
            self._npending = 0
            self._refresh_headroom()
            if st != c.QS_OK:
                self._release()
                raise _status_error(st, "update() of staged items")
        return 0

    cdef inline void _release_changed(self) noexcept:
        """Release the lock after a change to n or nan_count."""
        self._refresh_headroom()
        PyThread_release_lock(self._lock)

    # ---- updates -----------------------------------------------------------

    def update(self, values, weights=None):
        """Add one item, or a batch of items, to the sketch.

        Parameters
        ----------
        values : float or array_like
            A number, or a 1-D sequence or numpy array of numbers (any bool,
            integer or float dtype; read-only and non-contiguous arrays are
            fine, they are converted once to contiguous float64).
        weights : int or array_like of int, optional
            Positive integer multiplicities, one per item: item ``values[i]``
            counts ``weights[i]`` times.  Exact: no randomness is involved.

        Raises
        ------
        TypeError
            Non-numeric input (strings, objects, None).
        ValueError
            More than one dimension, weights of another length or not positive
            integers, or a NaN under ``nan_policy="raise"``.  The sketch is
            unchanged.

        Examples
        --------
        >>> import numpy as np, qsketch
        >>> s = qsketch.KLLSketch(seed=1)
        >>> s.update(3.5)
        >>> s.update([1, 2, float("nan")])
        >>> s.update(np.array([10.0, 20.0]), weights=[5, 2])
        >>> s.n, s.nan_count
        (10, 1)
        >>> s.rank(10.0)
        0.8
        """
        cdef double x
        cdef qs_status st
        if weights is None and (PyFloat_Check(values) or PyLong_Check(values)):
            x = values
            if x != x and self._nan_raise:
                raise _status_error(c.QS_ENAN, "update()")
            if self._pending == NULL:
                if self._sk == NULL:
                    raise RuntimeError("KLLSketch is not initialized (create it with KLLSketch(...))")
                self._pending = <double *>malloc(PENDING_CAPACITY * sizeof(double))
                if self._pending == NULL:
                    raise MemoryError("update(): out of memory")
            while self._npending >= PENDING_CAPACITY:
                self._sync()
                self._release()
            if <uint64_t>self._npending >= self._headroom:
                # At the edge of 2**64 items: no staging, exact check now.
                self._sync()
                st = c.qs_kll_update(self._sk, x, self._nan_raise)
                self._release_changed()
                if st != c.QS_OK:
                    raise _status_error(st, "update()")
                return
            self._pending[self._npending] = x
            self._npending += 1
            return
        items = _validate.as_items(values)
        cdef const double[::1] xv = items
        cdef const uint64_t[::1] wv
        cdef size_t n = xv.shape[0]
        if n == 0:
            if weights is not None:
                _validate.as_weights(weights, 0)
            return
        if weights is None:
            self._sync()
            with nogil:
                st = c.qs_kll_update_batch(self._sk, &xv[0], n, self._nan_raise)
            self._release_changed()
        else:
            wv = _validate.as_weights(weights, n)
            self._sync()
            with nogil:
                st = c.qs_kll_update_weighted(self._sk, &xv[0], &wv[0], n, self._nan_raise)
            self._release_changed()
        if st != c.QS_OK:
            raise _status_error(st, "update()")

    # ---- merging -----------------------------------------------------------

    def merge(self, other):
        """Absorb ``other`` into this sketch, in place (``other`` is unchanged).

        The result summarizes both streams: n, min, max and nan_count add up
        exactly.  Sketches of different k merge; the result takes the smaller
        k, and with it the larger error bound.

        Examples
        --------
        >>> import qsketch
        >>> a, b = qsketch.KLLSketch(seed=1), qsketch.KLLSketch(k=100, seed=2)
        >>> a.update(range(0, 50)); b.update(range(50, 100))
        >>> a.merge(b)
        >>> a.n, a.k, a.min, a.max
        (100, 100, 0.0, 99.0)
        """
        if not isinstance(other, KLLSketch):
            raise TypeError(f"merge() takes a KLLSketch; got {type(other).__name__}")
        cdef KLLSketch o = <KLLSketch>other
        if o is self:
            o = self.copy()
        if o._sk == NULL:
            raise RuntimeError("the sketch to merge is not initialized")
        cdef qs_status st
        # Lock in a fixed (address) order, so a.merge(b) and b.merge(a) in two
        # threads cannot deadlock.
        cdef KLLSketch first = self if <size_t><void *>self < <size_t><void *>o else o
        cdef KLLSketch second = o if first is self else self
        first._sync()
        try:
            second._sync()
        except BaseException:
            first._release()
            raise
        with nogil:
            st = c.qs_kll_merge(self._sk, o._sk)
        self._refresh_headroom()
        second._release()
        first._release()
        if st != c.QS_OK:
            raise _status_error(st, "merge()")

    def __add__(self, other):
        if not isinstance(self, KLLSketch) or not isinstance(other, KLLSketch):
            return NotImplemented
        out = self.copy()
        out.merge(other)
        return out

    def __iadd__(self, other):
        if not isinstance(other, KLLSketch):
            return NotImplemented
        self.merge(other)
        return self

    def copy(self):
        """Return an independent copy (same items, same random state).

        Examples
        --------
        >>> import qsketch
        >>> a = qsketch.KLLSketch(seed=3); a.update([1.0, 2.0])
        >>> b = a.copy(); b.update(3.0)
        >>> a.n, b.n
        (2, 3)
        """
        cdef qs_status st
        self._sync()
        cdef qs_kll *sk = c.qs_kll_copy(self._sk, &st)
        self._release()
        if sk == NULL:
            raise _status_error(st, "copy()")
        return KLLSketch._wrap(sk)

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    # ---- properties --------------------------------------------------------

    @property
    def k(self):
        """The accuracy parameter k (after merges, the smallest k merged in).

        Examples
        --------
        >>> import qsketch
        >>> a, b = qsketch.KLLSketch(k=200), qsketch.KLLSketch(k=64)
        >>> a.merge(b); a.k
        64
        """
        self._sync()
        try:
            return c.qs_kll_k(self._sk)
        finally:
            self._release()

    @property
    def n(self):
        """Number of items summarized (total weight), NaN items excluded.

        Examples
        --------
        >>> import qsketch
        >>> s = qsketch.KLLSketch(seed=0); s.update([1.0, float("nan"), 2.0], weights=[1, 1, 3])
        >>> s.n
        4
        """
        self._sync()
        try:
            return c.qs_kll_n(self._sk)
        finally:
            self._release()

    @property
    def nan_count(self):
        """Number of NaN items ignored (total weight).

        Examples
        --------
        >>> import qsketch
        >>> s = qsketch.KLLSketch(seed=0); s.update([1.0, float("nan"), float("nan")])
        >>> s.nan_count
        2
        """
        self._sync()
        try:
            return c.qs_kll_nan_count(self._sk)
        finally:
            self._release()

    @property
    def min(self):
        """Smallest item seen, exactly; NaN when empty.

        Examples
        --------
        >>> import qsketch
        >>> s = qsketch.KLLSketch(seed=0); s.min
        nan
        >>> s.update([3.0, -1.5]); s.min
        -1.5
        """
        self._sync()
        try:
            return c.qs_kll_min(self._sk)
        finally:
            self._release()

    @property
    def max(self):
        """Largest item seen, exactly; NaN when empty.

        Examples
        --------
        >>> import qsketch
        >>> s = qsketch.KLLSketch(seed=0); s.update([3.0, float("inf")]); s.max
        inf
        """
        self._sync()
        try:
            return c.qs_kll_max(self._sk)
        finally:
            self._release()

    @property
    def num_retained(self):
        """Number of items the sketch stores (distinct values in the exact mode).

        Examples
        --------
        >>> import numpy as np, qsketch
        >>> s = qsketch.KLLSketch(seed=0); s.update([1.0, 1.0, 2.0])
        >>> s.num_retained  # two distinct values, counted exactly
        2
        >>> s.update(np.random.default_rng(0).random(100_000))
        >>> s.num_retained < 1000
        True
        """
        self._sync()
        try:
            return c.qs_kll_num_retained(self._sk)
        finally:
            self._release()

    @property
    def is_empty(self):
        """True when no (non-NaN) item has been added.

        Examples
        --------
        >>> import qsketch
        >>> s = qsketch.KLLSketch(seed=0); s.update(float("nan")); s.is_empty
        True
        """
        return self.n == 0

    @property
    def is_estimation_mode(self):
        """True once the sketch has compacted: answers are estimates from then on.

        While False, every rank and quantile is exact.

        Examples
        --------
        >>> import numpy as np, qsketch
        >>> s = qsketch.KLLSketch(seed=0); s.update(np.arange(100.0)); s.is_estimation_mode
        False
        >>> s.update(np.random.default_rng(0).random(10_000)); s.is_estimation_mode
        True
        """
        self._sync()
        try:
            return bool(c.qs_kll_is_estimation_mode(self._sk))
        finally:
            self._release()

    @property
    def nan_policy(self):
        """"ignore" or "raise" (see the class documentation).

        Examples
        --------
        >>> import qsketch
        >>> qsketch.KLLSketch(nan_policy="raise").nan_policy
        'raise'
        """
        return "raise" if self._nan_raise else "ignore"

    @property
    def estimator(self):
        """The default estimator of rank and quantile queries: "spline",
        "learned", "linear" or "step" (see docs/algorithm.md and
        docs/interpolation.md).

        Examples
        --------
        >>> import qsketch
        >>> qsketch.KLLSketch().estimator, qsketch.KLLSketch(estimator="step").estimator
        ('spline', 'step')
        """
        return ESTIMATORS[self._estimator]

    @property
    def exact_limit(self):
        """How many distinct values the sketch still counts exactly.

        While the stream has at most this many distinct values, the sketch
        keeps each with its exact count and every answer is exact.  The
        first distinct value beyond it moves them into the compactors, and
        this becomes 0.

        Examples
        --------
        >>> import qsketch
        >>> s = qsketch.KLLSketch(seed=0)
        >>> s.exact_limit
        300
        >>> s.update([1, 2, 3] * 1000)
        >>> s.is_estimation_mode, s.rank(2), s.exact_limit
        (False, 0.6666666666666666, 300)
        """
        self._sync()
        try:
            return c.qs_kll_exact_limit(self._sk)
        finally:
            self._release()

    @property
    def buckets(self):
        """Most boundaries of the accuracy layer (0: the sketch has none).

        The layer keeps exact counts between up to this many adaptive
        boundaries beside the compactors; the "spline" estimator answers from
        it (see docs/algorithm.md).

        Examples
        --------
        >>> import qsketch
        >>> qsketch.KLLSketch(k=100).buckets, qsketch.KLLSketch(buckets=0).buckets
        (200, 0)
        """
        self._sync()
        try:
            return c.qs_kll_buckets(self._sk)
        finally:
            self._release()

    cdef int _estimator_code(self, estimator) except -1:
        if estimator is None:
            return _EST_C[self._estimator]
        return _EST_C[_validate.check_estimator(estimator, ESTIMATORS)]

    # ---- queries -----------------------------------------------------------

    def rank(self, x, inclusive=True, estimator=None):
        """Estimated normalized rank of ``x``: the fraction of items <= x
        (``inclusive=True``) or < x (``inclusive=False``).

        ``x`` may be a number (returns a float) or an array of any shape
        (returns an array of that shape).  NaN query values raise ValueError.
        An empty sketch returns NaN.  ``estimator`` ("spline", "learned",
        "linear" or "step") overrides the sketch's default for this call.

        Examples
        --------
        >>> import qsketch
        >>> s = qsketch.KLLSketch(seed=0); s.update([1, 2, 2, 3])
        >>> s.rank(2), s.rank(2, inclusive=False)
        (0.75, 0.25)
        >>> s.rank([0, 1, 3])
        array([0.  , 0.25, 1.  ])
        """
        cdef double q, r
        cdef qs_status st
        cdef int est = self._estimator_code(estimator)
        cdef bint inc
        if PyFloat_Check(x) or PyLong_Check(x):
            q = x
            if q != q:
                raise ValueError("query values must not be NaN")
            inc = inclusive  # converted before the lock is taken: it may raise
            self._sync()
            st = c.qs_kll_rank_est(self._sk, &q, 1, inc, est, &r)
            self._release()
            if st != c.QS_OK:
                raise _status_error(st, "rank()")
            return r
        arr = _validate.as_queries(x)
        flat = np.ascontiguousarray(arr.reshape(-1))
        out = np.empty(flat.shape[0], dtype=np.float64)
        self._query(flat, out, inclusive, False, est)
        if arr.ndim == 0 and not isinstance(x, np.ndarray):
            return float(out[0])  # a numpy scalar in, a float out
        return out.reshape(arr.shape)

    cdef _query(self, flat, out, bint inclusive, bint quantile, int est):
        cdef const double[::1] qv = flat
        cdef double[::1] ov = out
        cdef size_t n = qv.shape[0]
        cdef qs_status st = c.QS_OK
        if n == 0:
            return
        self._sync()
        with nogil:
            if quantile:
                st = c.qs_kll_quantile_est(self._sk, &qv[0], n, inclusive, est, &ov[0])
            else:
                st = c.qs_kll_rank_est(self._sk, &qv[0], n, inclusive, est, &ov[0])
        self._release()
        if st != c.QS_OK:
            raise _status_error(st, "quantile()" if quantile else "rank()")

    def cdf(self, splits, inclusive=True, estimator=None):
        """Estimated cumulative distribution at the split points.

        Returns an array of ``len(splits) + 1`` values: the rank of each split
        point, then 1.0.  ``splits`` must be strictly increasing and free of
        NaN.  An empty sketch returns NaN everywhere.

        Examples
        --------
        >>> import qsketch
        >>> s = qsketch.KLLSketch(seed=0); s.update([1, 2, 3, 4])
        >>> s.cdf([1.5, 3])
        array([0.25, 0.75, 1.  ])
        """
        cdef int est = self._estimator_code(estimator)
        arr = _validate.as_splits(splits)
        out = np.empty(arr.shape[0] + 1, dtype=np.float64)
        self._query(arr, out[:-1], inclusive, False, est)
        out[-1] = np.nan if self.is_empty else 1.0
        return out

    def pmf(self, splits, inclusive=True, estimator=None):
        """Estimated probability mass between consecutive split points.

        Returns ``len(splits) + 1`` masses: below the first split point,
        between each pair, and above the last (the differences of ``cdf``).

        Examples
        --------
        >>> import qsketch
        >>> s = qsketch.KLLSketch(seed=0); s.update([1, 2, 3, 4])
        >>> s.pmf([1.5, 3])
        array([0.25, 0.5 , 0.25])
        """
        cdf = self.cdf(splits, inclusive, estimator)
        return np.diff(cdf, prepend=0.0)

    def quantile(self, p, inclusive=True, estimator=None):
        """Estimated quantile: the inverse of ``rank``.

        With ``inclusive=True`` this is the smallest x with rank(x) >= p (in
        exact mode, the "inverted_cdf" method of numpy.quantile); with
        ``inclusive=False`` the smallest x with rank(x) > p.  With the step
        estimator x is always a retained item; the interpolating estimators
        return values between retained items where the rank moves
        continuously, and the atom itself where it jumps.  ``quantile(0)``
        and ``quantile(1)`` are the exact minimum and maximum.  ``p`` may be a
        number or an array of any shape, each in [0, 1] (anything else raises
        ValueError).  An empty sketch returns NaN.

        Examples
        --------
        >>> import qsketch
        >>> s = qsketch.KLLSketch(seed=0); s.update([10, 20, 30, 40])
        >>> s.quantile(0.5), s.quantile(0.5, inclusive=False)
        (20.0, 30.0)
        >>> s.quantile([0, 0.25, 1])
        array([10., 10., 40.])
        """
        cdef double pp, r
        cdef qs_status st
        cdef int est = self._estimator_code(estimator)
        cdef bint inc
        if PyFloat_Check(p) or PyLong_Check(p):
            pp = p
            if not (0.0 <= pp <= 1.0):
                raise ValueError(f"probabilities must lie in [0, 1]; got {p!r}")
            inc = inclusive  # converted before the lock is taken: it may raise
            self._sync()
            st = c.qs_kll_quantile_est(self._sk, &pp, 1, inc, est, &r)
            self._release()
            if st != c.QS_OK:
                raise _status_error(st, "quantile()")
            return r
        arr = _validate.as_probabilities(p)
        flat = np.ascontiguousarray(arr.reshape(-1))
        out = np.empty(flat.shape[0], dtype=np.float64)
        self._query(flat, out, inclusive, True, est)
        if arr.ndim == 0 and not isinstance(p, np.ndarray):
            return float(out[0])  # a numpy scalar in, a float out
        return out.reshape(arr.shape)

    def quantiles(self, ps, inclusive=True, estimator=None):
        """Estimated quantiles at each probability in ``ps``, as an array.

        Examples
        --------
        >>> import qsketch
        >>> s = qsketch.KLLSketch(seed=0); s.update(range(1, 101))
        >>> s.quantiles([0.1, 0.5, 0.9])
        array([10., 50., 90.])
        """
        return self.quantile(np.atleast_1d(_validate.as_probabilities(ps)), inclusive, estimator)

    def normalized_rank_error(self, pmf=False):
        """A priori normalized rank error for this sketch's k, at ~99% confidence.

        With ``pmf=False``, the bound for a single rank or quantile query; with
        ``pmf=True``, for all the values of one ``pmf``/``cdf`` call at once.
        The constants are Apache DataSketches' empirical fit for KLL.

        Examples
        --------
        >>> import qsketch
        >>> round(qsketch.KLLSketch(k=200).normalized_rank_error(), 4)
        0.0133
        """
        return c.qs_kll_normalized_rank_error(self.k, 1 if pmf else 0)

    def rank_bounds(self, x, confidence=0.99):
        """Lower and upper bounds on the true normalized rank of ``x``.

        Returns ``(lower, upper)``, each a float or an array shaped like ``x``:
        the step estimate (KLL's guarantee is about it, whatever the
        sketch's default estimator) minus and plus the a priori error,
        clipped to [0, 1].
        The error at confidence ``1 - delta`` scales as
        ``sqrt(log(2 / delta))`` (the sub-Gaussian tail of KLL's error) from
        the 99% constant.  In exact mode the bounds equal the exact rank.

        Examples
        --------
        >>> import qsketch
        >>> s = qsketch.KLLSketch(seed=0); s.update([1, 2, 3, 4])
        >>> s.rank_bounds(2.5)
        (0.5, 0.5)
        """
        conf = _validate.check_confidence(confidence)
        r = self.rank(x, True, "step")
        if not self.is_estimation_mode:
            eps = 0.0
        else:
            eps = self.normalized_rank_error(False) * sqrt(log(2.0 / (1.0 - conf)) / log(2.0 / _BASE_DELTA))
        lo = np.clip(np.subtract(r, eps), 0.0, 1.0)
        hi = np.clip(np.add(r, eps), 0.0, 1.0)
        if isinstance(r, float):
            return float(lo), float(hi)
        return lo, hi

    def sorted_view(self):
        """The retained items in ascending order with their weights.

        Returns ``(items, weights)``: float64 and uint64 arrays; weights sum
        to ``n``.  Useful to build estimators on top of the sketch.

        Examples
        --------
        >>> import qsketch
        >>> s = qsketch.KLLSketch(seed=0); s.update([3.0, 1.0, 2.0])
        >>> s.sorted_view()
        (array([1., 2., 3.]), array([1, 1, 1], dtype=uint64))
        """
        cdef const double *items
        cdef const uint64_t *cum
        cdef uint32_t size
        cdef qs_status st
        self._sync()
        try:
            st = c.qs_kll_sorted_view(self._sk, &items, &cum, &size)
            if st != c.QS_OK:
                raise _status_error(st, "sorted_view()")
            out_items = np.empty(size, dtype=np.float64)
            out_cum = np.empty(size, dtype=np.uint64)
            if size:
                self._copy_view(out_items, out_cum, items, cum, size)
        finally:
            self._release()
        weights = np.diff(out_cum, prepend=np.uint64(0))
        return out_items, weights

    cdef void _copy_view(self, double[::1] oi, uint64_t[::1] oc, const double *items,
                         const uint64_t *cum, uint32_t size) noexcept:
        memcpy(&oi[0], items, size * sizeof(double))
        memcpy(&oc[0], cum, size * sizeof(uint64_t))

    # ---- serialization -----------------------------------------------------

    def to_bytes(self):
        """Serialize to the versioned qsketch format (magic, version, CRC32).

        Examples
        --------
        >>> import qsketch
        >>> s = qsketch.KLLSketch(seed=0); s.update([1.0, 2.0])
        >>> b = s.to_bytes()
        >>> b[:3], qsketch.KLLSketch.from_bytes(b).n
        (b'QSK', 2)
        """
        cdef size_t size, written
        cdef qs_status st
        self._sync()
        try:
            size = c.qs_kll_serialized_size(self._sk)
            out = PyBytes_FromStringAndSize(NULL, size)
            st = c.qs_kll_serialize(self._sk, <uint8_t *>PyBytes_AS_STRING(out), size, &written)
        finally:
            self._release()
        if st != c.QS_OK:
            raise _status_error(st, "to_bytes()")
        return out

    @classmethod
    def from_bytes(cls, data):
        """Rebuild a sketch from ``to_bytes()`` output.

        Every length, field and the checksum are verified first: truncated,
        corrupt or foreign bytes raise :class:`qsketch.SerializationError`
        (a ValueError) that says what is wrong.

        Examples
        --------
        >>> import qsketch
        >>> s = qsketch.KLLSketch(seed=0); s.update(range(10))
        >>> qsketch.KLLSketch.from_bytes(s.to_bytes()).quantile(0.5)
        4.0
        """
        if isinstance(data, str) or not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"from_bytes() takes bytes, bytearray or memoryview; got {type(data).__name__}")
        buf = bytes(data)
        cdef const unsigned char[::1] view = buf
        cdef qs_status st
        cdef const char *message = NULL
        cdef const uint8_t *ptr = NULL
        cdef size_t n = view.shape[0]
        if n:
            ptr = <const uint8_t *>&view[0]
        else:
            ptr = <const uint8_t *>b""
        cdef qs_kll *sk = c.qs_kll_deserialize(ptr, n, &st, &message)
        if sk == NULL:
            if st == c.QS_ENOMEM:
                raise MemoryError("from_bytes(): out of memory")
            reason = message.decode() if message != NULL else "unknown error"
            raise SerializationError(f"cannot decode a sketch: {reason}")
        return KLLSketch._wrap(sk)

    @classmethod
    def from_datasketches(cls, data, *, seed=None, kind=None):
        """Build a sketch from Apache DataSketches KLL bytes; see qsketch.from_datasketches().

        Examples
        --------
        >>> import qsketch
        >>> s = qsketch.KLLSketch(seed=0); s.update([1.0, 2.0, 3.0])
        >>> qsketch.KLLSketch.from_datasketches(s.to_datasketches()).n
        3
        """
        from qsketch.datasketches_format import from_datasketches
        return from_datasketches(data, seed, kind=kind)

    def to_datasketches(self, kind="double"):
        """Serialize in Apache DataSketches' compact KLL format; see qsketch.to_datasketches().

        Examples
        --------
        >>> import qsketch
        >>> s = qsketch.KLLSketch(seed=0); s.update([1.0, 2.0, 3.0])
        >>> len(s.to_datasketches("double")) > 0
        True
        """
        from qsketch.datasketches_format import to_datasketches
        return to_datasketches(self, kind)

    def __reduce__(self):
        return (_kll_from_bytes, (self.to_bytes(),))

    def __repr__(self):
        if self._sk == NULL:
            return "KLLSketch(<uninitialized>)"
        return (f"KLLSketch(k={self.k}, n={self.n}, retained={self.num_retained}, "
                f"min={self.min!r}, max={self.max!r}, estimation_mode={self.is_estimation_mode})")

    def _check_invariants(self):
        """Raise AssertionError if the C structure is inconsistent (for tests)."""
        cdef const char *message = NULL
        self._sync()
        cdef int bad = c.qs_kll_check_invariants(self._sk, &message)
        self._release()
        if bad:
            raise AssertionError(message.decode())

    def _levels(self):
        """The retained items per level, in storage order (for tests)."""
        cdef const double *items
        cdef uint32_t size
        cdef uint32_t h
        out = []
        self._sync()
        try:
            for h in range(c.qs_kll_num_levels(self._sk)):
                c.qs_kll_level(self._sk, h, &items, &size)
                arr = np.empty(size, dtype=np.float64)
                if size:
                    self._copy_level(arr, items, size)
                out.append(arr)
        finally:
            self._release()
        return out

    def _buckets(self):
        """The accuracy layer (for tests): (boundaries, open counts, boundary counts)."""
        cdef const double *bound
        cdef const uint64_t *open_
        cdef const uint64_t *atom
        cdef uint32_t m, i
        self._sync()
        try:
            c.qs_kll_bucket_layer(self._sk, &bound, &open_, &atom, &m)
            if c.qs_kll_buckets(self._sk) == 0:
                return None
            b = np.array([bound[i] for i in range(m)], dtype=np.float64)
            o = np.array([open_[i] for i in range(m + 1)], dtype=np.uint64)
            a = np.array([atom[i] for i in range(m)], dtype=np.uint64)
        finally:
            self._release()
        return b, o, a

    cdef void _copy_level(self, double[::1] dst, const double *items, uint32_t size) noexcept:
        memcpy(&dst[0], items, size * sizeof(double))
