"""TF Serving's REST JSON mapping, as the stand-in (demo/serving.py) speaks it: a predict request's body in row
(`instances`) or columnar (`inputs`) format -> numpy arrays for a signature's inputs, with the error texts TF
Serving gives (tensorflow/serving `tensorflow_serving/util/json_tensor.cc`, `FillPredictRequestFromJson`;
`tensorflow_serving/g3doc/api_rest.md`, "JSON mapping"), and numpy outputs back to JSON."""

from __future__ import annotations

import base64
import binascii
import json


class RestError(Exception):
    """A request TF Serving refuses: its error text and HTTP status (400 for InvalidArgument)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


# TensorFlow's DataTypeString names (tensorflow/core/framework/types.cc), which TF Serving's errors print.
_TF_NAMES = {"float32": "float", "float64": "double"}
_INT_RANGES = {"int8": 32, "int16": 32, "int32": 32, "uint8": 32, "int64": 64}


def _debug(value) -> str:
    """A JSON value as TF Serving quotes it in errors: compact, at most 256 characters."""
    return json.dumps(value, separators=(",", ":"), allow_nan=True)[:256]


def _json_type(value) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    return {dict: "Object", list: "Array", str: "String"}.get(type(value), "Number")


def _is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _leaf(value, dtype: str):
    """One JSON value as an element of a tensor of `dtype` (a numpy dtype name), or the error TF Serving
    gives (AddValueToTensor)."""
    def type_error():
        return RestError(f"JSON Value: {_debug(value)} Type: {_json_type(value)} is not of expected type: "
                         f"{_TF_NAMES.get(dtype, dtype)}")

    if dtype in ("float32", "float64"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise type_error()
        return value
    if dtype in _INT_RANGES or dtype in ("uint32", "uint64"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise type_error()
        low, high = ((0, 2**32 - 1) if dtype == "uint32" else (0, 2**64 - 1) if dtype == "uint64"
                     else (-2**(_INT_RANGES[dtype] - 1), 2**(_INT_RANGES[dtype] - 1) - 1))
        if not low <= value <= high:
            raise type_error()
        return value
    if dtype == "bool":
        if not isinstance(value, bool):
            raise type_error()
        return value
    if dtype in ("object", "bytes", "str"):  # DT_STRING
        if _is_b64(value):
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (binascii.Error, ValueError) as e:
                raise RestError("Unable to base64 decode") from e
        if isinstance(value, dict):
            raise RestError(f"JSON Value: {_debug(value)} not formatted correctly for base64 data")
        if not isinstance(value, str):
            raise type_error()
        return value.encode()
    raise RestError(f"Conversion of JSON Value: {_debug(value)} to type: {dtype}", status=501)


def _tensor(value, dtype: str):
    """A JSON value as a dense tensor (numpy array): its shape is read along the first elements, then every
    list must match it and every leaf sit at the last level (GetDenseTensorShape, FillTensorProto)."""
    import numpy as np

    shape, probe = [], value
    while isinstance(probe, list):
        shape.append(len(probe))
        probe = probe[0] if probe else None
    rank, flat = len(shape), []

    def fill(v, level: int) -> None:
        if not isinstance(v, list):
            if level != rank:
                raise RestError(f"JSON Value: {_debug(v)} found at incorrect level: {level + 1} in the JSON DOM. "
                                f"Expected at level: {rank}")
            flat.append(_leaf(v, dtype))
            return
        if level >= rank:
            raise RestError(f"Encountered list at unexpected level: {level} expected < {rank}")
        if len(v) != shape[level]:
            raise RestError(f"Encountered list at unexpected size: {len(v)} at level: {level} "
                            f"expected size: {shape[level]}")
        if level == rank - 1 and dtype in ("float32", "float64") and all(
                type(x) in (int, float) for x in v):
            flat.extend(v)  # the common case, a row of numbers, without a call per number
            return
        for item in v:
            fill(item, level + 1)

    fill(value, 0)
    np_dtype = object if dtype in ("object", "bytes", "str") else dtype
    return np.array(flat, dtype=np_dtype).reshape(shape)


def shape_text(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _document(raw: bytes):
    """The request body as JSON, or TF Serving's error (json_tensor.cc, `ParseJson`)."""
    if not raw.strip():
        raise RestError("JSON Parse error: The document is empty")
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise RestError(f"JSON Parse error: {e.msg} at offset: {e.pos}") from e
    if not isinstance(doc, dict):
        raise RestError(f"JSON Value: {_debug(doc)} Is not object")
    return doc


def _signature_name(doc: dict) -> str:
    name = doc.get("signature_name", "serving_default")
    if not isinstance(name, str):
        raise RestError(f"JSON Value: {_debug(doc)} not formatted correctly. 'signature_name' key must be a "
                        "string value.")
    return name or "serving_default"


def parse_examples(raw: bytes) -> str:
    """A classify or regress request body -> its signature name, by TF Serving's rules (json_tensor.cc,
    `FillClassifyRegressRequestFromJson`: the same text for both methods, which names classify). Raises
    RestError with TF Serving's text. The examples themselves are only checked to be objects."""
    doc = _document(raw)
    name = _signature_name(doc)
    examples = doc.get("examples")
    if "examples" not in doc:
        raise RestError(f"JSON Value: {_debug(doc)} When method is classify, key 'examples' is expected and was "
                        "not found")
    if not isinstance(examples, list):
        raise RestError(f"JSON Value: {_debug(doc)} Expecting 'examples' value to be an list/array")
    if not examples:
        raise RestError(f"JSON Value: {_debug(doc)} 'examples' value is an empty array")
    for example in examples:
        if not isinstance(example, dict):
            raise RestError(f"Example must be JSON object but got JSON {_json_type(example)}")
    return name


def parse_predict(raw: bytes, signatures: dict[str, dict[str, str]]):
    """A predict request body -> (signature name, "row" or "columnar", {input name: numpy array}), by TF
    Serving's rules (json_tensor.cc, `FillPredictRequestFromJson`). `signatures`: signature name -> {input
    name: numpy dtype name}. Raises RestError with TF Serving's text."""
    import numpy as np

    doc = _document(raw)
    name = _signature_name(doc)
    if name not in signatures:
        raise RestError(f'Serving signature name: "{name}" not found in signature def')
    inputs = signatures[name]
    if not inputs:
        raise RestError(f"Failed to get input map for signature: {name}")
    names = sorted(inputs)  # TF Serving walks a std::set / proto map: sorted names

    if "instances" in doc and "inputs" in doc:
        raise RestError(f"JSON Value: {_debug(doc)} Not formatted correctly expecting only one of 'inputs' or "
                        "'instances' keys to exist ")
    if "instances" in doc:
        rows = doc["instances"]
        if not isinstance(rows, list):
            raise RestError(f"JSON Value: {_debug(doc)} Expecting 'instances' to be an list/array")
        if not rows:
            raise RestError(f"JSON Value: {_debug(doc)} No values in 'instances' array")
        if not isinstance(rows[0], dict) and len(inputs) > 1:
            raise RestError("instances is a plain list, but expecting list of objects as multiple input tensors "
                            "required as per tensorinfo_map")
        objects = isinstance(rows[0], dict) and not _is_b64(rows[0])
        parts: dict[str, list] = {}
        for i, row in enumerate(rows):
            row_is_object = isinstance(row, dict) and not _is_b64(row)
            if objects and not row_is_object:
                raise RestError(f"Expecting object but got list at item {i} of input list")
            if not objects and row_is_object:
                raise RestError(f"Expecting value/list but got object at item {i} of input list")
            items = row.items() if objects else [(names[0], row)]
            for key, value in items:
                try:
                    if key not in inputs:
                        raise RestError(f"JSON object: does not have named input: {key}")
                    tensor = _tensor(value, inputs[key])
                    if parts.get(key):
                        first = parts[key][0]
                        if first.size != tensor.size:
                            raise RestError(f"Expecting tensor size: {first.size} but got: {tensor.size}")
                        if first.shape != tensor.shape:
                            raise RestError(f"Expecting shape {shape_text(first.shape)} but got: "
                                            f"{shape_text(tensor.shape)}")
                    parts.setdefault(key, []).append(tensor)
                except RestError as e:
                    where = f"key: {key} of" if objects else "of"
                    raise RestError(f"Failed to process element: {i} {where} 'instances' list. Error: "
                                    f"INVALID_ARGUMENT: {e.message}", e.status) from e
            if objects and set(row) != set(names):
                raise RestError(f"Failed to process element: {i} of 'instances' list. JSON object: {_debug(row)} "
                                f"keys must be equal to: {','.join(names)}")
        return name, "row", {k: np.stack(v) for k, v in parts.items()}
    if "inputs" in doc:
        given = doc["inputs"]
        if not isinstance(given, dict) or _is_b64(given):
            if len(inputs) > 1:
                raise RestError("inputs is a plain value/list, but expecting an object as multiple input tensors "
                                "required as per tensorinfo_map")
            return name, "columnar", {names[0]: _tensor(given, inputs[names[0]])}
        tensors = {}
        for key in names:
            if key not in given:
                raise RestError(f"Missing named input: {key} in 'inputs' object.")
            tensors[key] = _tensor(given[key], inputs[key])
        return name, "columnar", tensors
    raise RestError("Missing 'inputs' or 'instances' key")


def jsonable(array):
    """A numpy value as JSON: bytes as {"b64": ...} objects, as TF Serving writes DT_STRING outputs."""
    import numpy as np

    if array.dtype == object:
        return np.vectorize(lambda b: {"b64": base64.b64encode(b).decode()}, otypes=[object])(array).tolist()
    return array.tolist()
