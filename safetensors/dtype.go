package safetensors

// Dtype names as they appear in the "dtype" field of a safetensors header.
const (
	F64  = "F64"  // IEEE 754 binary64
	F32  = "F32"  // IEEE 754 binary32
	F16  = "F16"  // IEEE 754 binary16
	BF16 = "BF16" // bfloat16: the top 16 bits of a binary32
	I64  = "I64"  // signed 64-bit integer
	I32  = "I32"  // signed 32-bit integer
	I16  = "I16"  // signed 16-bit integer
	I8   = "I8"   // signed 8-bit integer
	U64  = "U64"  // unsigned 64-bit integer
	U32  = "U32"  // unsigned 32-bit integer
	U16  = "U16"  // unsigned 16-bit integer
	U8   = "U8"   // unsigned 8-bit integer
	BOOL = "BOOL" // one byte per element, 0 or 1

	// F8E4M3 and F8E5M2 are the two 8-bit float formats; they are
	// recognised (a file holding them opens, and Raw returns their bytes)
	// but not converted.
	F8E4M3 = "F8_E4M3"
	F8E5M2 = "F8_E5M2"
)

// itemSizes maps every recognised dtype to its size in bytes.
var itemSizes = map[string]int64{
	F64: 8, F32: 4, F16: 2, BF16: 2,
	I64: 8, I32: 4, I16: 2, I8: 1,
	U64: 8, U32: 4, U16: 2, U8: 1,
	BOOL: 1, F8E4M3: 1, F8E5M2: 1,
}

// ItemSize returns the size in bytes of one element of dtype, and false
// when dtype is not one this package recognises.
func ItemSize(dtype string) (int, bool) {
	n, ok := itemSizes[dtype]
	return int(n), ok
}

// IsFloat reports whether tensors of dtype convert to float32 (F64, F32,
// F16, BF16).
func IsFloat(dtype string) bool {
	switch dtype {
	case F64, F32, F16, BF16:
		return true
	}
	return false
}

// IsInt reports whether tensors of dtype convert to int64 (every integer
// dtype and BOOL).
func IsInt(dtype string) bool {
	switch dtype {
	case I64, I32, I16, I8, U64, U32, U16, U8, BOOL:
		return true
	}
	return false
}
