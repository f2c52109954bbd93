"""An F32 GGUF of a quantised one: the same metadata (tokenizer, chat template, hyper-parameters) with
every tensor dequantised to float32, i.e. the weights transformers' GGUF loader gives (the HF folder
bench:engine runs our engine and PyTorch on), so llama.cpp can be measured on exactly those weights.
A bench aid: the output is a model file, never committed.

  /work/.venv/bin/python tools/gguf_dequantize.py IN.gguf OUT.gguf
"""

import sys

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import dequantize


def main():
    src, dst = sys.argv[1], sys.argv[2]
    reader = GGUFReader(src)
    arch = reader.fields['general.architecture'].contents()
    writer = GGUFWriter(dst, arch)
    for field in reader.fields.values():
        # the header fields and the architecture are written by GGUFWriter itself
        if field.name.startswith('GGUF.') or field.name == 'general.architecture':
            continue
        value = field.contents()
        if field.name == 'general.file_type':
            value = 0  # LLAMA_FTYPE_ALL_F32
        vtype = GGUFValueType(field.types[0])
        sub_type = GGUFValueType(field.types[-1]) if vtype == GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, value, vtype, sub_type=sub_type)
    for t in reader.tensors:
        data = dequantize(t.data, t.tensor_type).astype(np.float32) if t.tensor_type != GGMLQuantizationType.F32 else np.asarray(t.data, np.float32)
        # GGUF shapes list the fastest axis first; numpy arrays the slowest first
        writer.add_tensor(t.name, data.reshape(tuple(int(d) for d in reversed(t.shape))), raw_dtype=GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == '__main__':
    main()
