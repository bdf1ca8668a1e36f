/*
 * CI only: lets the PyPI torchvision 0.28.0 wheel import on top of the CPU-only torch 2.13.0
 * wheel that CI machines carry on disk.
 *
 * Why: the PyPI torchvision wheel is built against CUDA torch. Its compiled ops (_C.so) name
 * libc10_cuda.so and libtorch_cuda.so as dependencies, which the CPU torch does not ship, so the
 * library fails to load and `import torchvision` then fails ("operator torchvision::nms does not
 * exist"). Installing CUDA torch instead costs about 5 GB of disk, more than CI machines reliably
 * have (a CI run died with "No space left on device" while installing it).
 *
 * This file defines the 16 c10/ATen CUDA symbols that _C.so imports (listed with
 * `nm -D --undefined-only torchvision/_C.so`, minus what the CPU torch libraries export). None
 * of them is called unless a CUDA tensor reaches a torchvision op, which cannot happen with a
 * CPU-only torch; if one ever is, it says so and aborts rather than doing anything silently.
 * .ci/run compiles it twice, as libc10_cuda.so and libtorch_cuda.so, and puts them on
 * LD_LIBRARY_PATH for the tests. Nothing of this is part of the cfbench package.
 */
#include <stdio.h>
#include <stdlib.h>

static void no_cuda(const char *symbol)
{
    fprintf(stderr, "cfbench CI CUDA stub called: %s (this CPU-only torch has no CUDA)\n", symbol);
    abort();
}

#define STUB(symbol) \
    void symbol(void) { no_cuda(#symbol); }

STUB(_ZN2at4cuda26getCurrentDevicePropertiesEv)
STUB(_ZN3c104cuda12device_countEv)
STUB(_ZN3c104cuda14ExchangeDeviceEa)
STUB(_ZN3c104cuda14MaybeSetDeviceEa)
STUB(_ZN3c104cuda17getStreamFromPoolEba)
STUB(_ZN3c104cuda17getStreamFromPoolEia)
STUB(_ZN3c104cuda20getCurrentCUDAStreamEa)
STUB(_ZN3c104cuda20getDefaultCUDAStreamEa)
STUB(_ZN3c104cuda20setCurrentCUDAStreamENS0_10CUDAStreamE)
STUB(_ZN3c104cuda29c10_cuda_check_implementationEiPKcS2_jb)
STUB(_ZN3c104cuda9GetDeviceEPa)
STUB(_ZN3c104cuda9SetDeviceEab)
STUB(_ZNK3c104cuda10CUDAStream11synchronizeEv)
STUB(_ZNK3c104cuda10CUDAStream5queryEv)
STUB(_ZNK3c104cuda10CUDAStream6streamEv)

/* c10::cuda::CUDACachingAllocator::allocator is a variable (the allocator in use), not a function. */
void *_ZN3c104cuda20CUDACachingAllocator9allocatorE = 0;
