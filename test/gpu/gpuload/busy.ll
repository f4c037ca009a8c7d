; The busy kernel of gpuload, in LLVM IR: busy.ptx is generated from it with
;   llc -march=nvptx64 -mcpu=sm_70 -mattr=+ptx60 -O2 busy.ll -o busy.ptx
; (go generate; TestPTXIsGenerated checks the two agree). PTX for sm_70 with
; ISA 6.0 is JIT-compiled by any driver since CUDA 9 for the GPU at hand
; (Volta and newer).
target datalayout = "e-i64:64-i128:128-v16:16-v32:32-n16:32:64"
target triple = "nvptx64-nvidia-cuda"

declare i32 @llvm.nvvm.read.ptx.sreg.tid.x()
declare i32 @llvm.nvvm.read.ptx.sreg.ctaid.x()
declare i32 @llvm.nvvm.read.ptx.sreg.ntid.x()
declare float @llvm.fma.f32(float, float, float)

; busy(out, iters): each thread runs iters iterations of two dependent FMA
; chains and stores their sum to out[global index], so nothing is dead code.
define void @busy(float addrspace(1)* %out, i32 %iters) {
entry:
  %tid = call i32 @llvm.nvvm.read.ptx.sreg.tid.x()
  %ctaid = call i32 @llvm.nvvm.read.ptx.sreg.ctaid.x()
  %ntid = call i32 @llvm.nvvm.read.ptx.sreg.ntid.x()
  %base = mul i32 %ctaid, %ntid
  %gid = add i32 %base, %tid
  %x0 = uitofp i32 %gid to float
  %go = icmp ugt i32 %iters, 0
  br i1 %go, label %loop, label %done
loop:
  %i = phi i32 [ 0, %entry ], [ %inext, %loop ]
  %a = phi float [ %x0, %entry ], [ %a1, %loop ]
  %b = phi float [ 1.0, %entry ], [ %b1, %loop ]
  %a1 = call float @llvm.fma.f32(float %a, float 0x3FEFFFFFC0000000, float 0x3E7AD7F2A0000000)
  %b1 = call float @llvm.fma.f32(float %b, float 0x3FEFFFFFC0000000, float 0x3E7AD7F2A0000000)
  %inext = add i32 %i, 1
  %more = icmp ult i32 %inext, %iters
  br i1 %more, label %loop, label %done
done:
  %ra = phi float [ %x0, %entry ], [ %a1, %loop ]
  %rb = phi float [ 1.0, %entry ], [ %b1, %loop ]
  %sum = fadd float %ra, %rb
  %idx = zext i32 %gid to i64
  %p = getelementptr float, float addrspace(1)* %out, i64 %idx
  store float %sum, float addrspace(1)* %p
  ret void
}

!nvvm.annotations = !{!0}
!0 = !{void (float addrspace(1)*, i32)* @busy, !"kernel", i32 1}
