/*
 * The common case of pricing one LLM span, in C: the genops processor calls it for every
 * span and falls back to its Python path (same results) whenever this returns None.
 *
 * price_span(values, spec, coefficients, window, head, tails, drift)
 *     -> (appended, source, cost, computed, duplicate) or None
 *
 * values: the span's dynamic attribute values (ints, floats, None, ...), as the scanner made them.
 * spec: (slot_input, slot_output, slot_cache_read, slot_cache_write, slot_reasoning, slot_cost,
 *        max_tokens, max_cost, inclusive, total_present,
 *        key_input, key_output, key_cache_read, key_cache_write, key_reasoning, key_cost, key_computed)
 *   slots are indexes into values or -1; keys are the encoded KeyValue.key fields (tag, length,
 *   UTF-8) of the genops.* attributes to append, or None where the span has its own.
 * coefficients: (input, cache_read, cache_write, output, reasoning, request) USD rates, or None.
 * window: None, or (Window, slot of the response id): the span is looked up in the window of
 *   calls seen; duplicate is None for a first copy (or no id), else (cost to book, overbooked).
 * head: the plan's encoded entries (attribution, model, provider); tails: the encoded entries
 *   that follow each outcome (reported, computed, unpriced). appended = head + numbers + tail.
 * drift: None, or the model's drift cell (see drift.py), where a reported cost's relative
 *   difference from the computed one is counted.
 *
 * Returns None (the Python path decides) for anything unusual: a token count that is not an
 * int in [0, max_tokens], a reported cost that is not a float
 * in (0, max_cost], or a span that carries genops.cost.total without reporting a usable one.
 * source: 0 reported, 1 computed, 2 unpriced (the model has no price), 3 unpriced (no usage).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define SPEC_SIZE 17

typedef struct {
    uint8_t data[256];
    Py_ssize_t len;
} out_t;

static void put_byte(out_t *o, uint8_t b) { o->data[o->len++] = b; }

static void put_varint(out_t *o, uint64_t v) {
    while (v >= 0x80) {
        put_byte(o, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    put_byte(o, (uint8_t)v);
}

static int varint_size(uint64_t v) {
    int n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Span.attributes entry: 0x4a len { key field, 0x12 len { AnyValue } }. Writes all but the AnyValue's
 * any_len bytes, which the caller adds; -1 if the entry would not fit. */
static int put_entry_head(out_t *o, PyObject *key, int any_len) {
    Py_ssize_t key_len = PyBytes_GET_SIZE(key);
    Py_ssize_t inner = key_len + 1 + varint_size((uint64_t)any_len) + any_len;
    if (o->len + 2 + 5 + inner > (Py_ssize_t)sizeof(o->data)) return -1;
    put_byte(o, 0x4a);
    put_varint(o, (uint64_t)inner);
    memcpy(o->data + o->len, PyBytes_AS_STRING(key), (size_t)key_len);
    o->len += key_len;
    put_byte(o, 0x12);
    put_varint(o, (uint64_t)any_len);
    return 0;
}

static int put_int_entry(out_t *o, PyObject *key, long long value) {
    if (put_entry_head(o, key, 1 + varint_size((uint64_t)value)) < 0) return -1;
    put_byte(o, 0x18); /* AnyValue.int_value */
    put_varint(o, (uint64_t)value);
    return 0;
}

static int put_double_entry(out_t *o, PyObject *key, double value) {
    if (put_entry_head(o, key, 9) < 0) return -1;
    put_byte(o, 0x21); /* AnyValue.double_value, fixed64 */
    uint64_t bits;
    memcpy(&bits, &value, 8);
    for (int i = 0; i < 8; i++) put_byte(o, (uint8_t)(bits >> (8 * i)));
    return 0;
}

/* 1: a count in [0, cap] (in *out); 0: absent; -1: anything else. */
static int count_at(PyObject *values, Py_ssize_t slot, long long cap, long long *out) {
    *out = 0;
    if (slot < 0) return 0;
    PyObject *v = PyTuple_GET_ITEM(values, slot);
    if (v == Py_None) return 0;
    if (!PyLong_CheckExact(v)) return -1;
    int overflow = 0;
    long long n = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || n < 0 || n > cap) return -1;
    *out = n;
    return 1;
}

/* The first eight items of a spec: the five token slots and the cost slot (indexes into values,
 * or -1), the token cap and the cost cap. 0, or -1 with an exception set. */
static int read_slots(PyObject *spec, PyObject *values, Py_ssize_t slots[6], long long *cap, double *max_cost) {
    Py_ssize_t n_values = PyTuple_GET_SIZE(values);
    for (int i = 0; i < 6; i++) {
        slots[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(spec, i));
        if (slots[i] == -1 && PyErr_Occurred()) return -1;
        if (slots[i] >= n_values) {
            PyErr_SetString(PyExc_ValueError, "slot beyond the values");
            return -1;
        }
    }
    *cap = PyLong_AsLongLong(PyTuple_GET_ITEM(spec, 6));
    *max_cost = PyFloat_AsDouble(PyTuple_GET_ITEM(spec, 7));
    return PyErr_Occurred() ? -1 : 0;
}

/* 1: a float cost in [0, max_cost] (above 0 unless allow_zero) in *cost; 0: absent; -1: anything else. */
static int cost_at(PyObject *values, Py_ssize_t slot, double max_cost, int allow_zero, double *cost) {
    *cost = 0.0;
    if (slot < 0) return 0;
    PyObject *raw = PyTuple_GET_ITEM(values, slot);
    if (raw == Py_None) return 0;
    if (!PyFloat_CheckExact(raw)) return -1;
    *cost = PyFloat_AS_DOUBLE(raw);
    return (allow_zero ? *cost >= 0.0 : *cost > 0.0) && *cost <= max_cost ? 1 : -1;
}

static PyObject *key_at(PyObject *spec, Py_ssize_t i) {
    PyObject *key = PyTuple_GET_ITEM(spec, i);
    return PyBytes_Check(key) ? key : NULL; /* one too long for the buffer sends the span the Python way */
}

/*
 * Window: the calls seen before, by a 64-bit FNV-1a hash of the response id, in two
 * generations of open-addressing tables (see relay/processors/genops/calls.py for the rules;
 * this is the same window without a Python object per call, so that holding 100,000 calls
 * neither grows the heap nor evicts the caches the rest of the relay runs in).
 * A first copy leaves its computed cost to top up, or NaN when its cost was reported.
 */
typedef struct {
    uint64_t key; /* 0: empty */
    double cost;
} call_t;

typedef struct {
    PyObject_HEAD
    call_t *tables[2];
    Py_ssize_t counts[2];
    Py_ssize_t mask, half_calls;
    long long half_ns, since;
    int started, current, enabled;
} Window;

static uint64_t call_key(const char *p, Py_ssize_t len) {
    uint64_t h = 14695981039346656037ull;
    for (Py_ssize_t i = 0; i < len; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h ? h : 1;
}

static call_t *find_call(Window *w, int table, uint64_t key) {
    call_t *t = w->tables[table];
    for (Py_ssize_t i = (Py_ssize_t)(key & (uint64_t)w->mask);; i = (i + 1) & w->mask) {
        if (t[i].key == key) return &t[i];
        if (t[i].key == 0) return NULL;
    }
}

static void rotate(Window *w) {
    w->current ^= 1;
    memset(w->tables[w->current], 0, sizeof(call_t) * (size_t)(w->mask + 1));
    w->counts[w->current] = 0;
}

static void put_call(Window *w, uint64_t key, double cost) {
    call_t *t = w->tables[w->current];
    Py_ssize_t i = (Py_ssize_t)(key & (uint64_t)w->mask);
    while (t[i].key != 0 && t[i].key != key) i = (i + 1) & w->mask;
    if (t[i].key == 0) w->counts[w->current]++;
    t[i].key = key;
    t[i].cost = cost;
    if (w->counts[w->current] >= w->half_calls) rotate(w);
}

/* 0: a first copy (recorded); 1: a later copy, what it books in *booked and *overbooked. */
static int see(Window *w, uint64_t key, int has_cost, double cost, int reported, double *booked,
               double *overbooked) {
    *booked = *overbooked = 0.0;
    call_t *seen = find_call(w, w->current, key);
    if (seen == NULL) seen = find_call(w, w->current ^ 1, key);
    if (seen == NULL) {
        put_call(w, key, reported ? NAN : (has_cost ? cost : 0.0));
        return 0;
    }
    double first = seen->cost;
    if (isnan(first) || !reported || !has_cost) return 1;
    put_call(w, key, NAN);
    double difference = cost - first;
    if (difference >= 0) *booked = difference;
    else *overbooked = -difference;
    return 1;
}

static int window_init(Window *w, PyObject *args, PyObject *kwargs) {
    Py_ssize_t max_calls;
    long long window_ns;
    if (!PyArg_ParseTuple(args, "nL", &max_calls, &window_ns)) return -1;
    w->enabled = max_calls > 0 && window_ns > 0;
    w->half_calls = max_calls / 2 > 0 ? max_calls / 2 : 1;
    w->half_ns = window_ns / 2 > 0 ? window_ns / 2 : 1;
    Py_ssize_t size = 2;
    while (size < 2 * w->half_calls + 1) size <<= 1; /* at most half full, so probes stay short */
    w->mask = size - 1;
    for (int i = 0; i < 2; i++) {
        PyMem_Free(w->tables[i]);
        w->tables[i] = PyMem_Calloc((size_t)size, sizeof(call_t));
        if (w->tables[i] == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        w->counts[i] = 0;
    }
    w->started = 0;
    w->current = 0;
    return 0;
}

static void window_dealloc(Window *w) {
    PyMem_Free(w->tables[0]);
    PyMem_Free(w->tables[1]);
    Py_TYPE(w)->tp_free((PyObject *)w);
}

static PyObject *window_expire(Window *w, PyObject *arg) {
    long long now = PyLong_AsLongLong(arg);
    if (now == -1 && PyErr_Occurred()) return NULL;
    if (!w->started) {
        w->started = 1;
        w->since = now;
    }
    long long elapsed = now - w->since;
    if (elapsed >= w->half_ns) {
        rotate(w);
        if (elapsed >= 2 * w->half_ns) rotate(w);
        w->since = now;
    }
    Py_RETURN_NONE;
}

static PyObject *booked_result(int later, double booked, double overbooked) {
    if (!later) Py_RETURN_NONE;
    return Py_BuildValue("(dd)", booked, overbooked);
}

static PyObject *window_see(Window *w, PyObject *args) {
    PyObject *id, *cost;
    int reported;
    if (!PyArg_ParseTuple(args, "UOp", &id, &cost, &reported)) return NULL;
    Py_ssize_t len;
    const char *utf8 = PyUnicode_AsUTF8AndSize(id, &len);
    if (utf8 == NULL) return NULL;
    int has_cost = cost != Py_None;
    double value = has_cost ? PyFloat_AsDouble(cost) : 0.0;
    if (value == -1.0 && PyErr_Occurred()) return NULL;
    double booked, overbooked;
    int later = see(w, call_key(utf8, len), has_cost, value, reported, &booked, &overbooked);
    return booked_result(later, booked, overbooked);
}

static Py_ssize_t window_len(Window *w) { return w->counts[0] + w->counts[1]; }

static PyMethodDef window_methods[] = {
    {"expire", (PyCFunction)window_expire, METH_O, "expire(now_ns): rotate the generations that aged out"},
    {"see", (PyCFunction)window_see, METH_VARARGS,
     "see(call_id, cost, reported) -> None for a first copy, else (cost to book, overbooked)"},
    {NULL, NULL, 0, NULL},
};

static PyObject *window_enabled(Window *w, void *closure) { return PyBool_FromLong(w->enabled); }

static PyGetSetDef window_getset[] = {
    {"enabled", (getter)window_enabled, NULL, "whether calls are remembered at all", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods window_sequence = {.sq_length = (lenfunc)window_len};

static PyTypeObject WindowType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "relay.genai._usage.Window",
    .tp_basicsize = sizeof(Window),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Window(max_calls, window_ns): LLM calls seen before, by response id",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)window_init,
    .tp_dealloc = (destructor)window_dealloc,
    .tp_methods = window_methods,
    .tp_getset = window_getset,
    .tp_as_sequence = &window_sequence,
};

/* The span's response id through the window: 0 none (or a first copy), 1 a later copy. */
static int see_span(PyObject *values, PyObject *window, int reported, int has_cost, double cost, double *booked,
                    double *overbooked) {
    *booked = *overbooked = 0.0;
    if (!PyTuple_Check(window) || PyTuple_GET_SIZE(window) != 2
        || !PyObject_TypeCheck(PyTuple_GET_ITEM(window, 0), &WindowType)) {
        PyErr_SetString(PyExc_ValueError, "window is (Window, slot)");
        return -1;
    }
    Window *w = (Window *)PyTuple_GET_ITEM(window, 0);
    Py_ssize_t slot = PyLong_AsSsize_t(PyTuple_GET_ITEM(window, 1));
    if (slot == -1 && PyErr_Occurred()) return -1;
    if (slot < 0 || slot >= PyTuple_GET_SIZE(values)) {
        PyErr_SetString(PyExc_ValueError, "slot beyond the values");
        return -1;
    }
    PyObject *id = PyTuple_GET_ITEM(values, slot);
    if (!PyUnicode_CheckExact(id) || PyUnicode_GET_LENGTH(id) == 0 || !w->enabled) return 0;
    Py_ssize_t len;
    const char *utf8 = PyUnicode_AsUTF8AndSize(id, &len);
    if (utf8 == NULL) return -1;
    return see(w, call_key(utf8, len), has_cost, cost, reported, booked, overbooked);
}

/* One drift observation into a cell: doubles [bound_0 .. bound_n-1, count_0 .. count_n, sum]. */
static int add_drift(PyObject *cell, double ratio) {
    Py_buffer view;
    if (PyObject_GetBuffer(cell, &view, PyBUF_WRITABLE | PyBUF_FORMAT) < 0) return -1;
    Py_ssize_t size = view.len / (Py_ssize_t)sizeof(double);
    if (view.itemsize != sizeof(double) || view.format == NULL || strcmp(view.format, "d") != 0 || size < 3
        || size % 2 != 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "a drift cell is an array of doubles: bounds, counts, sum");
        return -1;
    }
    double *d = (double *)view.buf;
    Py_ssize_t n = (size - 2) / 2, i = 0;
    while (i < n && ratio > d[i]) i++; /* the first bound at or above the ratio, as bisect_left */
    d[n + i] += 1;
    d[size - 1] += ratio;
    PyBuffer_Release(&view);
    return 0;
}

static PyObject *price_span(PyObject *self, PyObject *args) {
    PyObject *values, *spec, *coefficients, *window, *head, *tails, *drift;
    if (!PyArg_ParseTuple(args, "O!O!OOSO!O", &PyTuple_Type, &values, &PyTuple_Type, &spec, &coefficients, &window,
                          &head, &PyTuple_Type, &tails, &drift))
        return NULL;
    if (PyTuple_GET_SIZE(tails) != 3) {
        PyErr_SetString(PyExc_ValueError, "tails are (reported, computed, unpriced)");
        return NULL;
    }
    if (PyTuple_GET_SIZE(spec) != SPEC_SIZE) {
        PyErr_SetString(PyExc_ValueError, "spec has the wrong size");
        return NULL;
    }
    Py_ssize_t slots[6];
    long long cap;
    double max_cost;
    if (read_slots(spec, values, slots, &cap, &max_cost) < 0) return NULL;
    int inclusive = PyObject_IsTrue(PyTuple_GET_ITEM(spec, 8));
    int total_present = PyObject_IsTrue(PyTuple_GET_ITEM(spec, 9));
    if (PyErr_Occurred()) return NULL;

    long long counts[5];
    int any = 0;
    for (int i = 0; i < 5; i++) {
        int rc = count_at(values, slots[i], cap, &counts[i]);
        if (rc < 0) Py_RETURN_NONE;
        if (i < 2) any |= rc;
    }
    long long in = counts[0], out = counts[1], cache_read = counts[2], cache_write = counts[3],
              reasoning = counts[4];
    /* Exclusive counts, or ones that cannot be inclusive (more cached than input in all). */
    if (!inclusive || cache_read + cache_write > in) in += cache_read + cache_write;
    if (!inclusive || reasoning > out) out += reasoning;

    int priced = any && coefficients != Py_None;
    double computed = 0.0;
    if (priced) {
        if (!PyTuple_Check(coefficients) || PyTuple_GET_SIZE(coefficients) != 6) {
            PyErr_SetString(PyExc_ValueError, "coefficients are 6 rates or None");
            return NULL;
        }
        double c[6];
        for (int i = 0; i < 6; i++) {
            c[i] = PyFloat_AsDouble(PyTuple_GET_ITEM(coefficients, i));
            if (c[i] == -1.0 && PyErr_Occurred()) return NULL;
        }
        /* The same sum, in the same order, as the Python path. */
        computed = (double)(in - cache_read - cache_write) * c[0] + (double)cache_read * c[1]
                   + (double)cache_write * c[2] + (double)(out - reasoning) * c[3] + (double)reasoning * c[4]
                   + c[5];
    }

    double cost;
    int reported = cost_at(values, slots[5], max_cost, 0, &cost);
    if (reported < 0) Py_RETURN_NONE;
    if (total_present && !reported) Py_RETURN_NONE;

    out_t o = {{0}, 0};
    int source;
    PyObject *key;
    long long shown[5] = {in, out, cache_read, cache_write, reasoning};
    for (int i = 0; any && i < 5; i++) {
        key = key_at(spec, 10 + i);
        if (key != NULL && (i < 2 || shown[i] > 0) && put_int_entry(&o, key, shown[i]) < 0) Py_RETURN_NONE;
    }
    if (reported) {
        source = 0;
        if (priced && (key = key_at(spec, 16)) != NULL && put_double_entry(&o, key, computed) < 0) Py_RETURN_NONE;
        if (priced && computed > 0 && drift != Py_None && add_drift(drift, (cost - computed) / computed) < 0)
            return NULL;
    } else if (priced) {
        source = 1;
        cost = computed;
    } else {
        source = any ? 2 : 3;
    }
    if (source < 2 && (key = key_at(spec, 15)) != NULL && put_double_entry(&o, key, cost) < 0) Py_RETURN_NONE;

    int later = 0;
    double booked = 0.0, overbooked = 0.0;
    if (window != Py_None) {
        later = see_span(values, window, source == 0, source < 2, cost, &booked, &overbooked);
        if (later < 0) return NULL;
    }
    PyObject *duplicate = booked_result(later, booked, overbooked);
    if (duplicate == NULL) return NULL;
    PyObject *cost_object = source >= 2 ? Py_NewRef(Py_None) : PyFloat_FromDouble(cost);
    PyObject *computed_object = priced ? PyFloat_FromDouble(computed) : Py_NewRef(Py_None);
    PyObject *tail = PyTuple_GET_ITEM(tails, source < 2 ? source : 2);
    if (!PyBytes_Check(tail)) {
        Py_DECREF(duplicate);
        Py_XDECREF(cost_object);
        Py_XDECREF(computed_object);
        PyErr_SetString(PyExc_TypeError, "tails must be bytes");
        return NULL;
    }
    Py_ssize_t head_len = PyBytes_GET_SIZE(head), tail_len = PyBytes_GET_SIZE(tail);
    PyObject *entries = PyBytes_FromStringAndSize(NULL, head_len + o.len + tail_len);
    if (entries != NULL) {
        char *p = PyBytes_AS_STRING(entries);
        memcpy(p, PyBytes_AS_STRING(head), (size_t)head_len);
        memcpy(p + head_len, o.data, (size_t)o.len);
        memcpy(p + head_len + o.len, PyBytes_AS_STRING(tail), (size_t)tail_len);
    }
    if (cost_object == NULL || computed_object == NULL || entries == NULL) {
        Py_DECREF(duplicate);
        Py_XDECREF(cost_object);
        Py_XDECREF(computed_object);
        Py_XDECREF(entries);
        return NULL;
    }
    return Py_BuildValue("(NiNNN)", entries, source, cost_object, computed_object, duplicate);
}

/*
 * accumulate(values, slots, acc, duration_ns) -> bool
 *
 * The genops_metrics connector's per-span arithmetic: adds one span to its plan's
 * accumulator, which the connector folds into the shared series at each flush.
 * slots: (input, output, cache_read, cache_write, reasoning, cost, max_tokens, max_cost), slots -1
 *   where absent (the layout of price_span's spec). acc: doubles [bounds (n)..., spans, cost, uncached input, output without reasoning,
 *   cache_read, cache_write, reasoning, duration sum, bucket counts (n + 1)...].
 * False (nothing added) when a value is not what the genops processor writes: a token count
 * that is not an int in [0, max_tokens] or a cost that is not a float in [0, max_cost]; the
 * connector's Python path takes that span.
 */
static PyObject *accumulate(PyObject *self, PyObject *args) {
    PyObject *values, *slot_tuple, *acc;
    unsigned long long duration;
    if (!PyArg_ParseTuple(args, "O!O!OK", &PyTuple_Type, &values, &PyTuple_Type, &slot_tuple, &acc, &duration))
        return NULL;
    if (PyTuple_GET_SIZE(slot_tuple) != 8) {
        PyErr_SetString(PyExc_ValueError, "slots are (5 token slots, cost slot, max_tokens, max_cost)");
        return NULL;
    }
    Py_ssize_t slots[6];
    long long cap;
    double max_cost, cost;
    if (read_slots(slot_tuple, values, slots, &cap, &max_cost) < 0) return NULL;
    if (cost_at(values, slots[5], max_cost, 1, &cost) < 0) Py_RETURN_FALSE;
    long long counts[5];
    for (int i = 0; i < 5; i++)
        if (count_at(values, slots[i], cap, &counts[i]) < 0) Py_RETURN_FALSE;
    Py_buffer view;
    if (PyObject_GetBuffer(acc, &view, PyBUF_WRITABLE | PyBUF_FORMAT) < 0) return NULL;
    Py_ssize_t size = view.len / (Py_ssize_t)sizeof(double);
    if (view.itemsize != sizeof(double) || view.format == NULL || strcmp(view.format, "d") != 0 || size < 10
        || (size - 9) % 2 != 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "an accumulator is an array of doubles: bounds, totals, buckets");
        return NULL;
    }
    double *d = (double *)view.buf;
    Py_ssize_t nb = (size - 9) / 2;
    double *t = d + nb;
    long long in = counts[0] - counts[2] - counts[3], out = counts[1] - counts[4];
    t[0] += 1;
    t[1] += cost;
    t[2] += (double)(in > 0 ? in : 0);
    t[3] += (double)(out > 0 ? out : 0);
    t[4] += (double)counts[2];
    t[5] += (double)counts[3];
    t[6] += (double)counts[4];
    double seconds = (double)duration / 1e9;
    t[7] += seconds;
    Py_ssize_t i = 0;
    while (i < nb && seconds > d[i]) i++; /* as bisect_left */
    t[8 + i] += 1;
    PyBuffer_Release(&view);
    Py_RETURN_TRUE;
}

static PyMethodDef methods[] = {
    {"accumulate", accumulate, METH_VARARGS, "accumulate(values, slots, acc, duration_ns) -> bool"},
    {"price_span", price_span, METH_VARARGS,
     "price_span(values, spec, coefficients, window, head, tails, drift) -> (appended, source, cost, computed, "
     "duplicate) or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_usage", NULL, -1, methods};

PyMODINIT_FUNC PyInit__usage(void) {
    if (PyType_Ready(&WindowType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&WindowType);
    if (PyModule_AddObject(m, "Window", (PyObject *)&WindowType) < 0) {
        Py_DECREF(&WindowType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
