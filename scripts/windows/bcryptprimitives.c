/* Test harness only, never shipped: Wine 8 has no ProcessPrng (Windows 10+'s
   bcryptprimitives.dll), which Rust's standard library calls for random numbers on
   Windows. Beside the .exe under Wine, this DLL provides it over RtlGenRandom
   (advapi32's SystemFunction036), which Wine has. Real Windows has its own DLL. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk)) return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
